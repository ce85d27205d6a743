"""Square payments through the real adapter code (the `squareup` SDK's AsyncSquare), against
the Square emulator on 127.0.0.1: card nonces for direct payments, payment links for
hosted checkout (the buyer's side is played by httpx on the link's page), refunds."""

from __future__ import annotations

import asyncio
import re
from dataclasses import replace
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import httpx
import pytest

from paygate.gateways.adapters.base import (
    AdapterConfig,
    DeclineCode,
    Environment,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
    PaymentFlow,
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
from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls
from paygate.gateways.adapters.square import SquareAdapter
from tests.fakes.square import SquareEmulator

CANARY = "CANARY9b2f"
OK = "cnon:card-nonce-ok"
RETURN_URL = "https://shop.example.com/pay/return?attempt=att_1"


@pytest.fixture
def emulator(square_emulator: SquareEmulator) -> SquareEmulator:
    square_emulator.access_token = f"EAAA{CANARY}"
    return square_emulator


def adapter(
    emulator: SquareEmulator, *, token: str | None = None, timeout: float = 5.0
) -> SquareAdapter:
    return SquareAdapter(
        AdapterConfig(
            gateway_type=GatewayType.SQUARE,
            environment=Environment.TEST,
            values={
                "access_token": token if token is not None else emulator.access_token,
                "application_id": "sandbox-sq0idb-abc",
                "location_id": emulator.location_id,
                "webhook_signature_key": f"sig-{CANARY}",
                "api_base_url": emulator.base_url,
            },
            timeout_seconds=timeout,
        )
    )


def card(nonce: str = OK, key: str = "att_1", amount: int = 1050, **kwargs: Any) -> PaymentRequest:
    return PaymentRequest(
        reference=f"pay_{key}",
        idempotency_key=key,
        amount=amount,
        currency="USD",
        flow=PaymentFlow.DIRECT,
        payment_method=nonce,
        description="Invoice INV-1",
        **kwargs,
    )


def hosted(key: str = "att_1", amount: int = 1050) -> PaymentRequest:
    return PaymentRequest(
        reference=f"pay_{key}",
        idempotency_key=key,
        amount=amount,
        currency="USD",
        flow=PaymentFlow.HOSTED,
        return_url=RETURN_URL,
        description="Invoice INV-1",
    )


def refund(reference: str, amount: int, key: str = "re_1") -> RefundRequest:
    return RefundRequest(
        reference=f"re_{key}",
        idempotency_key=key,
        gateway_payment_reference=reference,
        amount=amount,
        currency="USD",
        reason="customer asked",
    )


def assert_nothing_secret(calls: list[GatewayCallRecord], *nonces: str) -> None:
    said = repr(calls)
    assert calls
    assert CANARY not in said
    assert "cnon:" not in said
    for nonce in nonces:
        assert nonce not in said


_FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)


async def press(url: str, button: str) -> httpx.Response:
    """Open the payment link's page like a browser and press a button."""
    async with httpx.AsyncClient(timeout=5) as browser:
        page = await browser.get(url)
        assert page.status_code == 200
        form = next(f for f in _FORM.finditer(page.text) if f">{button}</button>" in f.group(2))
        return await browser.post(urljoin(url, form.group(1)))


# --- direct card payments -----------------------------------------------------------


async def test_card_payment_succeeds(emulator: SquareEmulator) -> None:
    with recording_gateway_calls() as calls:
        result = await adapter(emulator).create_payment(card())
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency, result.raw_status) == (1050, "USD", "COMPLETED")
    payment = emulator.payments[result.gateway_reference]
    assert payment["reference_id"] == "pay_att_1"
    assert payment["location_id"] == emulator.location_id
    assert payment["note"] == "Invoice INV-1"
    (key,) = [k for (endpoint, k) in emulator.idempotency if endpoint == "payments"]
    assert key == "att_1"
    assert [c.operation for c in calls] == ["create_payment"]
    assert calls[0].response["status"] == "COMPLETED"
    assert calls[0].request["source"] == "card_nonce"
    assert_nothing_secret(calls, OK)
    fetched = await adapter(emulator).fetch_payment(card(), result.gateway_reference)
    assert fetched == result
    completed = await adapter(emulator).complete_payment(card(), result.gateway_reference, {})
    assert completed == result


@pytest.mark.parametrize(
    ("nonce", "gateway_code", "decline_code", "hard"),
    [
        ("cnon:card-nonce-declined", "GENERIC_DECLINE", DeclineCode.CARD_DECLINED, False),
        ("cnon:card-nonce-rejected-cvv", "CVV_FAILURE", DeclineCode.INCORRECT_CVC, False),
        (
            "cnon:card-nonce-rejected-postalcode",
            "ADDRESS_VERIFICATION_FAILURE",
            DeclineCode.CARD_DECLINED,
            False,
        ),
        (
            "cnon:card-nonce-rejected-expiration",
            "INVALID_EXPIRATION",
            DeclineCode.EXPIRED_CARD,
            False,
        ),
        (
            "cnon:card-nonce-insufficient-funds",
            "INSUFFICIENT_FUNDS",
            DeclineCode.INSUFFICIENT_FUNDS,
            False,
        ),
        ("cnon:card-nonce-card-expired", "CARD_EXPIRED", DeclineCode.EXPIRED_CARD, True),
        (
            "cnon:card-nonce-verify-cvv-failure",
            "VERIFY_CVV_FAILURE",
            DeclineCode.INCORRECT_CVC,
            False,
        ),
        (
            "cnon:card-nonce-verification-required",
            "CARD_DECLINED_VERIFICATION_REQUIRED",
            DeclineCode.AUTHENTICATION_FAILED,
            False,
        ),
        ("cnon:card-nonce-blocked", "BLOCKED_BY_BLOCKLIST", DeclineCode.FRAUD_SUSPECTED, True),
    ],
)
async def test_declines(
    emulator: SquareEmulator, nonce: str, gateway_code: str, decline_code: DeclineCode, hard: bool
) -> None:
    with recording_gateway_calls() as calls, pytest.raises(GatewayDeclined) as info:
        await adapter(emulator).create_payment(card(nonce))
    declined = info.value
    assert (declined.decline_code, declined.hard, declined.gateway_code) == (
        decline_code.value,
        hard,
        gateway_code,
    )
    assert calls[0].outcome == "declined"
    assert calls[0].response["errors"][0]["code"] == gateway_code
    assert_nothing_secret(calls, nonce)
    # Asked again with the same key (the create's answer was lost): the same failed payment.
    found = await adapter(emulator).fetch_payment(card(nonce), None)
    assert found.status is GatewayPaymentStatus.FAILED
    assert found.decline is not None
    assert found.decline.code is decline_code
    assert (found.amount, found.currency) == (1050, "USD")
    (payment,) = emulator.payments_for("pay_att_1")
    assert payment["status"] == "FAILED"
    assert found.gateway_reference == payment["id"]
    fetched = await adapter(emulator).fetch_payment(card(nonce), payment["id"])
    assert fetched.decline is not None
    assert fetched.decline.gateway_code == gateway_code


async def test_used_nonce_is_rejected(emulator: SquareEmulator) -> None:
    nonce = "cnon:CBASEHWkkr8WcBcXQo9D-7vA3hw"  # what the Web Payments SDK hands out
    await adapter(emulator).create_payment(card(nonce, key="att_1"))
    with pytest.raises(GatewayRejected) as info:
        await adapter(emulator).create_payment(card(nonce, key="att_2"))
    assert info.value.gateway_code == "CARD_TOKEN_USED"
    assert nonce not in info.value.message


async def test_missing_nonce_is_rejected_before_calling(emulator: SquareEmulator) -> None:
    request = replace(card(), payment_method=None, flow=PaymentFlow.DIRECT)
    # No nonce means the hosted flow; a direct charge needs one.
    result = await adapter(emulator).create_payment(request)
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert not emulator.payments


async def test_same_key_twice_is_one_payment(emulator: SquareEmulator) -> None:
    nonce = "cnon:CBASEsinglEuse0000000000"
    first = await adapter(emulator).create_payment(card(nonce))
    again = await adapter(emulator).create_payment(card(nonce))
    assert first == again
    assert len(emulator.payments) == 1
    # The same key with another amount is refused, not charged.
    with pytest.raises(GatewayRejected) as info:
        await adapter(emulator).create_payment(card(nonce, amount=2000))
    assert info.value.gateway_code == "IDEMPOTENCY_KEY_REUSED"
    assert len(emulator.payments) == 1


async def test_timeout_after_send_then_fetch_finds_the_one_payment(
    emulator: SquareEmulator,
) -> None:
    emulator.answer_delay_seconds = 1.0  # Square charges; its answer comes too late
    with recording_gateway_calls() as calls, pytest.raises(GatewayTimeout) as info:
        await adapter(emulator, timeout=0.3).create_payment(card())
    assert info.value.request_sent
    assert calls[0].outcome == "timeout"
    assert len(emulator.payments_for("pay_att_1")) == 1
    emulator.answer_delay_seconds = 0
    found = await adapter(emulator).fetch_payment(card(), None)
    assert found.status is GatewayPaymentStatus.SUCCEEDED
    (payment,) = emulator.payments_for("pay_att_1")
    assert found.gateway_reference == payment["id"]
    assert len(emulator.payments) == 1


async def test_request_held_back_then_fetch_charges_once(emulator: SquareEmulator) -> None:
    # The request never reached Square's handler: sending it again charges once.
    emulator.knobs.delay_seconds = 1.0
    with pytest.raises(GatewayTimeout):
        await adapter(emulator, timeout=0.3).create_payment(card())
    emulator.knobs.delay_seconds = 0
    await asyncio.sleep(1.0)  # the held-back request finds its client gone
    found = await adapter(emulator).fetch_payment(card(), None)
    assert found.status is GatewayPaymentStatus.SUCCEEDED
    assert len(emulator.payments) == 1


async def test_amount_is_what_square_charged(emulator: SquareEmulator) -> None:
    emulator.reported_amount = 1049
    result = await adapter(emulator).create_payment(card())
    assert (result.status, result.amount, result.currency) == (
        GatewayPaymentStatus.SUCCEEDED,
        1049,
        "USD",
    )


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_unavailable(emulator: SquareEmulator, status: int) -> None:
    emulator.knobs.fail_status = status
    with pytest.raises(GatewayUnavailable) as info:
        await adapter(emulator).create_payment(card())
    assert type(info.value) is GatewayUnavailable
    assert str(status) in info.value.message
    assert len(emulator.requests) == 1  # the SDK's retries are off


async def test_bad_token_is_misconfigured(emulator: SquareEmulator) -> None:
    with recording_gateway_calls() as calls, pytest.raises(GatewayMisconfigured) as info:
        await adapter(emulator, token=f"EAAAwrong{CANARY}").create_payment(card())
    assert info.value.message == "Square rejected the access token."
    assert not emulator.payments
    assert_nothing_secret(calls, OK)


async def test_unknown_payment_is_rejected(emulator: SquareEmulator) -> None:
    with pytest.raises(GatewayRejected):
        await adapter(emulator).fetch_payment(card(), "NoSuchPayment000000000000000")


# --- hosted checkout: payment links ------------------------------------------------


async def test_payment_link_pay_round_trip(emulator: SquareEmulator) -> None:
    request = hosted()
    with recording_gateway_calls() as calls:
        created = await adapter(emulator).create_payment(request)
    assert created.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert (created.amount, created.currency, created.raw_status) == (1050, "USD", "DRAFT")
    assert created.next_action is not None
    assert created.next_action.redirect_url is not None
    (link,) = emulator.payment_links.values()
    assert created.gateway_reference == link["order_id"]
    assert created.next_action.redirect_url == link["url"]
    assert link["checkout_options"]["redirect_url"] == RETURN_URL
    assert_nothing_secret(calls)

    waiting = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert waiting.status is GatewayPaymentStatus.REQUIRES_ACTION

    answer = await press(created.next_action.redirect_url, "Pay")
    assert answer.status_code == 303
    back = urlsplit(answer.headers["location"])
    assert back.geturl().startswith("https://shop.example.com/pay/return?attempt=att_1&")
    params = dict(parse_qsl(back.query))
    assert params["orderId"] == created.gateway_reference
    with recording_gateway_calls() as calls:
        done = await adapter(emulator).complete_payment(request, created.gateway_reference, params)
    assert done.status is GatewayPaymentStatus.SUCCEEDED
    assert (done.amount, done.currency, done.raw_status) == (1050, "USD", "COMPLETED")
    assert done.gateway_reference == created.gateway_reference
    assert [c.operation for c in calls] == ["complete_payment", "complete_payment"]
    assert_nothing_secret(calls)
    fetched = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert fetched == done
    assert len(emulator.payments) == 1


async def test_payment_link_cancel(emulator: SquareEmulator) -> None:
    request = hosted()
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url is not None
    answer = await press(created.next_action.redirect_url, "Cancel")
    assert answer.status_code == 303
    assert answer.headers["location"] == RETURN_URL
    result = await adapter(emulator).complete_payment(request, created.gateway_reference, {})
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert not emulator.payments


async def test_payment_link_for_another_order_is_refused(emulator: SquareEmulator) -> None:
    request = hosted()
    created = await adapter(emulator).create_payment(request)
    with pytest.raises(GatewayRejected):
        await adapter(emulator).complete_payment(
            request, created.gateway_reference, {"orderId": "SomeOtherOrder"}
        )


async def test_payment_link_timeout_then_fetch_finds_the_one_link(
    emulator: SquareEmulator,
) -> None:
    request = hosted()
    emulator.answer_delay_seconds = 1.0
    with pytest.raises(GatewayTimeout):
        await adapter(emulator, timeout=0.3).create_payment(request)
    assert len(emulator.payment_links) == 1
    emulator.answer_delay_seconds = 0
    found = await adapter(emulator).fetch_payment(request, None)
    assert found.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert found.next_action is not None
    (link,) = emulator.payment_links.values()
    assert found.next_action.redirect_url == link["url"]
    assert found.gateway_reference == link["order_id"]


async def test_payment_link_same_key_twice_is_one_link(emulator: SquareEmulator) -> None:
    first = await adapter(emulator).create_payment(hosted())
    again = await adapter(emulator).create_payment(hosted())
    assert first == again
    assert len(emulator.payment_links) == 1


# --- refunds ------------------------------------------------------------------------


async def test_partial_then_full_refund_of_a_card_payment(emulator: SquareEmulator) -> None:
    paid = await adapter(emulator).create_payment(card())
    with recording_gateway_calls() as calls:
        first = await adapter(emulator).refund_payment(refund(paid.gateway_reference, 300))
    # Square's refunds start PENDING.
    assert (first.status, first.amount, first.currency, first.raw_status) == (
        GatewayRefundStatus.PENDING,
        300,
        "USD",
        "PENDING",
    )
    assert [c.operation for c in calls] == ["refund_lookup", "refund_payment"]
    assert calls[1].request["payment_id"] == paid.gateway_reference
    assert_nothing_secret(calls)
    replay = await adapter(emulator).refund_payment(refund(paid.gateway_reference, 300))
    assert replay == first
    with pytest.raises(GatewayRejected) as too_much:
        await adapter(emulator).refund_payment(refund(paid.gateway_reference, 751, "re_2"))
    assert too_much.value.gateway_code == "REFUND_AMOUNT_INVALID"
    emulator.refund_status = "COMPLETED"
    rest = await adapter(emulator).refund_payment(refund(paid.gateway_reference, 750, "re_3"))
    assert (rest.status, rest.amount) == (GatewayRefundStatus.SUCCEEDED, 750)
    assert emulator.payments[paid.gateway_reference]["refunded_money"]["amount"] == 1050
    assert len(emulator.refunds) == 2


async def test_refund_of_a_payment_link_order(emulator: SquareEmulator) -> None:
    request = hosted()
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url is not None
    with pytest.raises(GatewayRejected):  # not paid yet
        await adapter(emulator).refund_payment(refund(created.gateway_reference, 100))
    await press(created.next_action.redirect_url, "Pay")
    emulator.refund_status = "COMPLETED"
    result = await adapter(emulator).refund_payment(refund(created.gateway_reference, 1050))
    assert (result.status, result.amount) == (GatewayRefundStatus.SUCCEEDED, 1050)
    (payment,) = emulator.payments.values()
    assert payment["refunded_money"]["amount"] == 1050


# --- what became of a refund (fetch_refund) --------------------------------------------


async def test_a_pending_refund_is_read_again_until_it_completes(emulator: SquareEmulator) -> None:
    paid = await adapter(emulator).create_payment(card())
    request = refund(paid.gateway_reference, 400)
    first = await adapter(emulator).refund_payment(request)
    assert first.status is GatewayRefundStatus.PENDING  # what Square answers first
    with recording_gateway_calls() as calls:
        still = await adapter(emulator).fetch_refund(request, first.gateway_reference)
        emulator.refund_completes_on_read = True
        done = await adapter(emulator).fetch_refund(request, first.gateway_reference)
    assert still.status is GatewayRefundStatus.PENDING
    assert (done.status, done.amount, done.currency, done.raw_status) == (
        GatewayRefundStatus.SUCCEEDED,
        400,
        "USD",
        "COMPLETED",
    )
    assert done.gateway_reference == first.gateway_reference
    assert [c.operation for c in calls] == ["fetch_refund", "fetch_refund"]
    assert calls[-1].request["refund_id"] == first.gateway_reference
    assert calls[-1].response["status"] == "COMPLETED"
    assert_nothing_secret(calls)
    assert [r.method for r in emulator.requests if r.path.startswith("/v2/refunds/")] == [
        "GET",
        "GET",
    ]


async def test_a_failed_refund_reads_as_failed(emulator: SquareEmulator) -> None:
    paid = await adapter(emulator).create_payment(card())
    request = refund(paid.gateway_reference, 400)
    first = await adapter(emulator).refund_payment(request)
    emulator.complete_refund(first.gateway_reference, "FAILED")
    failed = await adapter(emulator).fetch_refund(request, first.gateway_reference)
    assert (failed.status, failed.raw_status) == (GatewayRefundStatus.FAILED, "FAILED")


async def test_a_refund_answered_late_is_replayed_by_its_key(emulator: SquareEmulator) -> None:
    paid = await adapter(emulator).create_payment(card())
    request = refund(paid.gateway_reference, 300)
    emulator.answer_delay_seconds = 1.0
    with pytest.raises(GatewayTimeout) as info:
        await adapter(emulator, timeout=0.3).refund_payment(request)
    assert info.value.request_sent is True
    emulator.answer_delay_seconds = 0.0
    for _ in range(50):
        if emulator.refunds:
            break
        await asyncio.sleep(0.05)
    with recording_gateway_calls() as calls:
        found = await adapter(emulator).fetch_refund(request, None)
    (made,) = emulator.refunds.values()
    assert (found.gateway_reference, found.amount) == (made["id"], 300)
    assert [c.operation for c in calls] == ["refund_lookup", "fetch_refund"]
    assert calls[-1].request["idempotency_key"] == request.idempotency_key
    assert len(emulator.refunds) == 1
    assert emulator.payments[paid.gateway_reference]["refunded_money"]["amount"] == 300
    assert_nothing_secret(calls)


async def test_fetching_an_unknown_refund_is_rejected(emulator: SquareEmulator) -> None:
    paid = await adapter(emulator).create_payment(card())
    with pytest.raises(GatewayRejected):
        await adapter(emulator).fetch_refund(refund(paid.gateway_reference, 100), "NOSUCHREFUND")
