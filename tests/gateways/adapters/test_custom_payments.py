"""The custom gateway adapter's payment operations (docs/custom-gateway.md), through its
real httpx client, against the contract's reference emulator.

The API key contains CANARY; the `recorded` fixture fails a test when a recorded gateway
call or a log line holds the key or a card number (the emulator's tokens embed one).
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate.gateways.adapters.base import (
    AdapterConfig,
    DeclineCode,
    Environment,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
    PaymentRequest,
    RefundRequest,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.custom import CustomGatewayAdapter
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.adapters.sandbox import (
    SANDBOX_CARDS,
    SandboxOutcome,
    sandbox_card_for_decline,
)
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.servers import serve_asgi
from tests.gateways.adapters.recording import Recorded, recording

CANARY = "CANARY91d4f0"
SHORT_TIMEOUT = 0.3
SLOW_ANSWER = 1.5
DECLINING = [c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.DECLINED]
ACTION_CARD = next(c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.REQUIRES_ACTION)
SLOW_CARD = next(c for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.UNKNOWN)
SUCCESS_TOKEN = "tok_4242424242424242"


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    with recording([CANARY, *(c.number for c in SANDBOX_CARDS)]) as found:
        yield found


@pytest.fixture
def emulator(custom_gateway_emulator: CustomGatewayEmulator) -> CustomGatewayEmulator:
    custom_gateway_emulator.api_key = f"key-{CANARY}"
    return custom_gateway_emulator


def adapter(
    emulator: CustomGatewayEmulator,
    *,
    base_url: str | None = None,
    key: str | None = None,
    timeout: float = 5.0,
) -> CustomGatewayAdapter:
    config = AdapterConfig(
        gateway_type=GatewayType.CUSTOM,
        environment=Environment.TEST,
        values={
            "base_url": base_url or emulator.base_url,
            "api_key": key or emulator.api_key,
            "webhook_secret": emulator.webhook_secret,
        },
        timeout_seconds=timeout,
    )
    built = build_adapter(config)
    assert isinstance(built, CustomGatewayAdapter)
    return built


def payment(
    token: str | None = SUCCESS_TOKEN, *, amount: int = 1050, currency: str = "USD", **kw: Any
) -> PaymentRequest:
    return PaymentRequest(
        reference=f"pay_{secrets.token_hex(6)}",
        idempotency_key=f"att_{secrets.token_hex(8)}",
        amount=amount,
        currency=currency,
        payment_method=token,
        **kw,
    )


def refund(payment_id: str, amount: int, *, key: str | None = None) -> RefundRequest:
    return RefundRequest(
        reference=f"re_{secrets.token_hex(4)}",
        idempotency_key=key or f"rk_{secrets.token_hex(8)}",
        gateway_payment_reference=payment_id,
        amount=amount,
        currency="USD",
        reason="requested_by_customer",
    )


class LateAnswer:
    """Runs the request to the end, then holds the answer back: the gateway did it, the
    answer came late."""

    def __init__(self, app: ASGIApp, delay: float) -> None:
        self.app = app
        self.delay = delay

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        held: list[Message] = []

        async def hold(message: Message) -> None:
            held.append(message)

        await self.app(scope, receive, hold)
        await asyncio.sleep(self.delay)
        for message in held:
            await send(message)


# --- payments ------------------------------------------------------------------------


@pytest.mark.parametrize("token", [SUCCESS_TOKEN, "tok_visa"])
async def test_payment_succeeds(
    emulator: CustomGatewayEmulator, recorded: Recorded, token: str
) -> None:
    request = payment(token, amount=500, currency="JPY", description="Invoice INV-7")
    result = await adapter(emulator).create_payment(request)
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency) == (500, "JPY")
    stored = emulator.state.payments[result.gateway_reference]
    assert stored["reference"] == request.reference
    assert stored["metadata"] == {"paygate_attempt": request.idempotency_key}
    sent = emulator.requests[-1]
    assert (sent.method, sent.path) == ("POST", "/payments")
    assert sent.headers["idempotency-key"] == request.idempotency_key
    assert sent.headers["authorization"] == f"Bearer {emulator.api_key}"
    [call] = recorded.calls
    assert (call.operation, call.outcome, call.http_status) == ("create_payment", "ok", 201)
    assert call.response["status"] == "succeeded"


@pytest.mark.parametrize("card", DECLINING, ids=lambda c: c.decline_code)
async def test_each_decline_code(
    emulator: CustomGatewayEmulator, recorded: Recorded, card: Any
) -> None:
    request = payment(f"tok_{card.number}")
    gateway = adapter(emulator)
    with pytest.raises(GatewayDeclined) as info:
        await gateway.create_payment(request)
    declined = info.value
    assert declined.decline_code == card.decline_code
    assert declined.hard is card.hard
    assert declined.gateway_code == card.decline_code
    assert recorded.calls[-1].outcome == "declined"

    # Asked again without a reference, the replayed answer reads as failed, not raised.
    fetched = await gateway.fetch_payment(request, None)
    assert fetched.status is GatewayPaymentStatus.FAILED
    assert fetched.decline is not None
    assert fetched.decline.code is DeclineCode(card.decline_code)
    assert fetched.decline.hard is card.hard
    assert len(emulator.state.payments) == 1
    # And with its reference.
    [payment_id] = emulator.state.payments
    again = await gateway.fetch_payment(request, payment_id)
    assert again.decline == fetched.decline


@pytest.mark.parametrize("result", ["succeed", "fail"])
async def test_redirect_action_then_complete(
    emulator: CustomGatewayEmulator, recorded: Recorded, result: str
) -> None:
    request = payment(f"tok_{ACTION_CARD.number}", return_url="https://shop.example/back?x=1")
    gateway = adapter(emulator)
    started = await gateway.create_payment(request)
    assert started.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert started.next_action is not None
    assert started.next_action.type == "redirect"
    url = started.next_action.redirect_url
    assert url == f"{emulator.base_url}/emulator/actions/{started.gateway_reference}"

    async with httpx.AsyncClient(timeout=10) as client:
        back = await client.get(url, params={"result": result})
    assert back.status_code == 303
    assert back.headers["location"] == (
        f"https://shop.example/back?x=1&payment_id={started.gateway_reference}"
    )
    done = await gateway.complete_payment(
        request, started.gateway_reference, {"payment_id": started.gateway_reference}
    )
    assert (done.amount, done.currency) == (1050, "USD")
    if result == "succeed":
        assert done.status is GatewayPaymentStatus.SUCCEEDED
    else:
        assert done.status is GatewayPaymentStatus.FAILED
        assert done.decline is not None
        assert done.decline.code is DeclineCode.CARD_DECLINED
    assert recorded.operations() == ["create_payment", "complete_payment"]


@pytest.mark.parametrize(
    "hostile",
    ["javascript:alert(document.cookie)", "data:text/html,<script>x</script>", "//evil.example"],
)
async def test_a_redirect_to_anything_but_a_web_page_is_not_passed_to_the_customer(
    emulator: CustomGatewayEmulator, recorded: Recorded, hostile: str
) -> None:
    """The customer's browser goes where the gateway says: never to a script URL."""
    request = payment(f"tok_{ACTION_CARD.number}", return_url="https://shop.example/back")
    gateway = adapter(emulator)
    started = await gateway.create_payment(request)
    emulator.state.payments[started.gateway_reference]["redirect_url"] = hostile

    with pytest.raises(GatewayUnavailable, match="not an http"):
        await gateway.fetch_payment(request, started.gateway_reference)


async def test_action_without_return_url_is_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    with pytest.raises(GatewayRejected) as info:
        await adapter(emulator).create_payment(payment(f"tok_{ACTION_CARD.number}"))
    assert "return_url" in info.value.message
    assert emulator.state.payments == {}


async def test_processing_then_settled(emulator: CustomGatewayEmulator, recorded: Recorded) -> None:
    request = payment(f"tok_{SLOW_CARD.number}")
    gateway = adapter(emulator)
    started = await gateway.create_payment(request)
    assert started.status is GatewayPaymentStatus.PROCESSING
    emulator.settle(started.gateway_reference, "succeeded")
    settled = await gateway.fetch_payment(request, started.gateway_reference)
    assert settled.status is GatewayPaymentStatus.SUCCEEDED


async def test_result_reports_what_the_gateway_holds(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    request = payment()
    gateway = adapter(emulator)
    made = await gateway.create_payment(request)
    emulator.state.payments[made.gateway_reference]["amount"] = 999
    fetched = await gateway.fetch_payment(request, made.gateway_reference)
    # Never the requested amount: the payments service compares the two.
    assert fetched.amount == 999


async def test_missing_payment_method_is_rejected_without_a_call(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    with pytest.raises(GatewayRejected):
        await adapter(emulator).create_payment(payment(None))
    assert emulator.requests == []


async def test_unknown_token_is_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    with pytest.raises(GatewayRejected) as info:
        await adapter(emulator).create_payment(payment("tok_nonsense"))
    assert info.value.gateway_code == "invalid_request"
    assert "payment_method" in info.value.message


async def test_unknown_payment_is_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    with pytest.raises(GatewayRejected) as info:
        await adapter(emulator).fetch_payment(payment(), "pay_nope")
    assert info.value.gateway_code == "not_found"


# --- idempotency and unknown outcomes ------------------------------------------------


async def test_same_key_twice_charges_once(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    request = payment()
    gateway = adapter(emulator)
    first = await gateway.create_payment(request)
    second = await gateway.create_payment(request)
    assert second == first
    assert list(emulator.state.payments) == [first.gateway_reference]


async def test_same_key_for_another_request_is_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    request = payment()
    gateway = adapter(emulator)
    await gateway.create_payment(request)
    other = PaymentRequest(
        reference=request.reference,
        idempotency_key=request.idempotency_key,
        amount=request.amount + 1,
        currency=request.currency,
        payment_method=request.payment_method,
    )
    with pytest.raises(GatewayRejected) as info:
        await gateway.create_payment(other)
    assert info.value.gateway_code == "idempotency_conflict"
    assert len(emulator.state.payments) == 1


async def test_late_answer_times_out_then_fetch_finds_the_one_payment(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    request = payment()
    with serve_asgi(LateAnswer(emulator.app, SLOW_ANSWER)) as late_url:
        slow = adapter(emulator, base_url=late_url, timeout=SHORT_TIMEOUT)
        with pytest.raises(GatewayTimeout) as info:
            await slow.create_payment(request)
    assert info.value.request_sent is True
    assert recorded.calls[-1].outcome == "timeout"
    [made] = emulator.state.payments

    found = await adapter(emulator).fetch_payment(request, None)
    assert found.gateway_reference == made
    assert found.status is GatewayPaymentStatus.SUCCEEDED
    assert (found.amount, found.currency) == (1050, "USD")
    assert list(emulator.state.payments) == [made]
    assert recorded.operations()[-1] == "fetch_payment"


async def test_server_error_then_retry_charges_once(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    emulator.knobs.fail_status = 503
    emulator.knobs.fail_times = 1
    request = payment()
    gateway = adapter(emulator)
    with pytest.raises(GatewayUnavailable) as info:
        await gateway.create_payment(request)
    assert type(info.value) is GatewayUnavailable
    assert "503" in info.value.message
    assert info.value.gateway_code == "unavailable"
    result = await gateway.fetch_payment(request, None)
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert list(emulator.state.payments) == [result.gateway_reference]


@pytest.mark.parametrize("status", [500, 502])
async def test_server_error_is_unavailable(
    emulator: CustomGatewayEmulator, recorded: Recorded, status: int
) -> None:
    emulator.knobs.fail_status = status
    with pytest.raises(GatewayUnavailable) as info:
        await adapter(emulator).create_payment(payment())
    assert type(info.value) is GatewayUnavailable
    assert recorded.calls[-1].http_status == status


async def test_bad_key_is_misconfigured(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator, key=f"wrong-{CANARY}")
    for call in (
        gateway.create_payment(payment()),
        gateway.fetch_payment(payment(), "pay_x"),
        gateway.refund_payment(refund("pay_x", 100)),
    ):
        with pytest.raises(GatewayMisconfigured) as info:
            await call
        assert "rejected the API key" in info.value.message
        assert CANARY not in info.value.message


# --- refunds -------------------------------------------------------------------------


async def test_partial_then_full_refund(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator)
    paid = await gateway.create_payment(payment(amount=1050))
    partial = refund(paid.gateway_reference, 300)
    first = await gateway.refund_payment(partial)
    assert first.status is GatewayRefundStatus.SUCCEEDED
    assert (first.amount, first.currency) == (300, "USD")
    # Retried with its key, the same refund.
    assert await gateway.refund_payment(partial) == first
    sent = emulator.requests[-1]
    assert sent.headers["idempotency-key"] == partial.idempotency_key

    rest = await gateway.refund_payment(refund(paid.gateway_reference, 750))
    assert rest.status is GatewayRefundStatus.SUCCEEDED
    assert rest.amount == 750
    assert emulator.state.payments[paid.gateway_reference]["amount_refunded"] == 1050
    assert recorded.calls[-1].response["amount"] == 750


async def test_over_refund_and_refund_of_failed_payment_are_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator)
    paid = await gateway.create_payment(payment(amount=1050))
    with pytest.raises(GatewayRejected) as info:
        await gateway.refund_payment(refund(paid.gateway_reference, 1051))
    assert info.value.gateway_code == "invalid_request"
    assert "param amount" in info.value.message

    card = sandbox_card_for_decline("card_declined")
    failed_request = payment(f"tok_{card.number}")
    with pytest.raises(GatewayDeclined):
        await gateway.create_payment(failed_request)
    failed = await gateway.fetch_payment(failed_request, None)
    with pytest.raises(GatewayRejected) as state:
        await gateway.refund_payment(refund(failed.gateway_reference, 100))
    assert state.value.gateway_code == "invalid_state"


# --- what became of a refund (fetch_refund) --------------------------------------------


async def test_a_pending_refund_is_read_again_until_it_succeeds(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator)
    paid = await gateway.create_payment(payment(amount=1050))
    emulator.refund_status = "pending"
    request = refund(paid.gateway_reference, 400)
    first = await gateway.refund_payment(request)
    assert first.status is GatewayRefundStatus.PENDING
    still = await gateway.fetch_refund(request, first.gateway_reference)
    assert still.status is GatewayRefundStatus.PENDING
    emulator.settle_refund(first.gateway_reference, "succeeded")
    done = await gateway.fetch_refund(request, first.gateway_reference)
    assert (done.status, done.amount, done.currency) == (GatewayRefundStatus.SUCCEEDED, 400, "USD")
    sent = emulator.requests[-1]
    assert (sent.method, sent.path) == (
        "GET",
        f"/payments/{paid.gateway_reference}/refunds/{first.gateway_reference}",
    )
    call = recorded.calls[-1]
    assert call.operation == "fetch_refund"
    assert call.request["refund_id"] == first.gateway_reference
    assert (call.response["status"], call.http_status) == ("succeeded", 200)


async def test_a_failed_pending_refund_reads_as_failed(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator)
    paid = await gateway.create_payment(payment(amount=1050))
    emulator.refund_status = "pending"
    request = refund(paid.gateway_reference, 400)
    first = await gateway.refund_payment(request)
    emulator.settle_refund(first.gateway_reference, "failed")
    failed = await gateway.fetch_refund(request, first.gateway_reference)
    assert failed.status is GatewayRefundStatus.FAILED
    assert emulator.state.payments[paid.gateway_reference]["amount_refunded"] == 0
    assert emulator.outbox[-1].event["type"] == "refund.failed"


async def test_a_refund_answered_late_is_replayed_by_its_key(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    paid = await adapter(emulator).create_payment(payment(amount=1050))
    request = refund(paid.gateway_reference, 300)
    with serve_asgi(LateAnswer(emulator.app, SLOW_ANSWER)) as late_url:
        slow = adapter(emulator, base_url=late_url, timeout=SHORT_TIMEOUT)
        with pytest.raises(GatewayTimeout) as info:
            await slow.refund_payment(request)
    assert info.value.request_sent is True
    [made] = emulator.state.refunds

    found = await adapter(emulator).fetch_refund(request, None)
    assert (found.gateway_reference, found.status) == (made, GatewayRefundStatus.SUCCEEDED)
    assert found.amount == 300
    assert list(emulator.state.refunds) == [made]
    assert emulator.state.payments[paid.gateway_reference]["amount_refunded"] == 300
    assert recorded.operations()[-1] == "fetch_refund"
    assert emulator.requests[-1].headers["idempotency-key"] == request.idempotency_key


async def test_fetching_an_unknown_refund_is_rejected(
    emulator: CustomGatewayEmulator, recorded: Recorded
) -> None:
    gateway = adapter(emulator)
    paid = await gateway.create_payment(payment(amount=1050))
    with pytest.raises(GatewayRejected) as info:
        await gateway.fetch_refund(refund(paid.gateway_reference, 100), "re_nosuchrefund")
    assert info.value.gateway_code == "not_found"
