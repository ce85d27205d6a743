"""PayPal payments (Orders v2, intent CAPTURE) through the real adapter code, against the
PayPal emulator on 127.0.0.1: the customer's side is played by httpx on the approve page."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
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
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls
from paygate.gateways.adapters.paypal import PayPalAdapter
from paygate.gateways.adapters.paypal_calls import clear_token_cache
from tests.fakes.paypal import PayPalEmulator

CANARY = "CANARY5e1d"
RETURN_URL = "https://shop.example.com/pay/return?attempt=att_1"
CANCEL_URL = "https://shop.example.com/pay/cancel?attempt=att_1"


@pytest.fixture(autouse=True)
def _fresh_token_cache() -> Iterator[None]:
    clear_token_cache()
    yield
    clear_token_cache()


@pytest.fixture
def emulator(paypal_emulator: PayPalEmulator) -> PayPalEmulator:
    paypal_emulator.client_secret = f"secret-{CANARY}"
    return paypal_emulator


def make_config(
    emulator: PayPalEmulator, *, secret: str | None = None, timeout: float = 5.0
) -> AdapterConfig:
    return AdapterConfig(
        gateway_type=GatewayType.PAYPAL,
        environment=Environment.TEST,
        values={
            "client_id": emulator.client_id,
            "client_secret": secret if secret is not None else emulator.client_secret,
            "api_base_url": emulator.base_url,
        },
        timeout_seconds=timeout,
    )


def adapter(emulator: PayPalEmulator, **kwargs: Any) -> PayPalAdapter:
    return PayPalAdapter(make_config(emulator, **kwargs))


def payment(
    key: str = "att_1", amount: int = 1050, currency: str = "USD", **kwargs: Any
) -> PaymentRequest:
    return PaymentRequest(
        reference=f"pay_{key}",
        idempotency_key=key,
        amount=amount,
        currency=currency,
        flow=PaymentFlow.HOSTED,
        return_url=RETURN_URL,
        cancel_url=CANCEL_URL,
        description="Invoice INV-1",
        **kwargs,
    )


def refund(order_id: str, amount: int, key: str = "re_1", currency: str = "USD") -> RefundRequest:
    return RefundRequest(
        reference=f"re_{key}",
        idempotency_key=key,
        gateway_payment_reference=order_id,
        amount=amount,
        currency=currency,
        reason="customer asked",
    )


_FORM = re.compile(r"<form[^>]*action=\"([^\"]+)\"[^>]*>(.*?)</form>", re.S)
_HIDDEN = re.compile(r"<input type=\"hidden\" name=\"([^\"]+)\" value=\"([^\"]*)\">")


async def press(redirect_url: str, button: str) -> dict[str, str]:
    """Open the approve page like a browser, press a button; the query PayPal sends back."""
    async with httpx.AsyncClient(timeout=5) as browser:
        page = await browser.get(redirect_url)
        assert page.status_code == 200
        form = next(f for f in _FORM.finditer(page.text) if f">{button}</button>" in f.group(2))
        fields = dict(_HIDDEN.findall(form.group(2)))
        answer = await browser.post(urljoin(redirect_url, form.group(1)), data=fields)
    assert answer.status_code == 303
    location = answer.headers["location"]
    back = urlsplit(location)
    expected = urlsplit(RETURN_URL if button.startswith("Pay") else CANCEL_URL)
    assert (back.netloc, back.path) == (expected.netloc, expected.path)
    return dict(parse_qsl(back.query))


def assert_nothing_secret(calls: list[GatewayCallRecord], emulator: PayPalEmulator) -> None:
    said = repr(calls)
    assert calls
    assert CANARY not in said
    assert "nonce" not in said
    assert "access_token" not in said
    for token in emulator.tokens:
        assert token not in said


async def approved_and_captured(emulator: PayPalEmulator, request: PaymentRequest) -> str:
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url
    back = await press(created.next_action.redirect_url, "Pay with PayPal")
    done = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
    assert done.status is GatewayPaymentStatus.SUCCEEDED
    return created.gateway_reference


# --- create, approve, capture ---------------------------------------------------------


async def test_create_sends_the_order_and_returns_the_payer_action_link(
    emulator: PayPalEmulator,
) -> None:
    request = payment()
    with recording_gateway_calls() as calls:
        result = await adapter(emulator).create_payment(request)
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert (result.amount, result.currency, result.raw_status) == (
        1050,
        "USD",
        "PAYER_ACTION_REQUIRED",
    )
    order = emulator.orders[result.gateway_reference]
    unit = order["purchase_units"][0]
    assert unit["amount"] == {"currency_code": "USD", "value": "10.50"}
    assert (unit["reference_id"], unit["custom_id"]) == ("pay_att_1", "pay_att_1")
    assert result.next_action is not None
    assert result.next_action.type == "redirect"
    assert result.next_action.redirect_url == (
        f"{emulator.base_url}/checkoutnow?token={result.gateway_reference}"
    )
    sent = next(r for r in emulator.requests if r.path == "/v2/checkout/orders")
    assert sent.headers["paypal-request-id"] == "att_1"
    assert sent.headers["authorization"].startswith("Bearer A21AA")
    assert [c.operation for c in calls] == ["oauth_token", "create_payment"]
    assert calls[1].response["status"] == "PAYER_ACTION_REQUIRED"
    assert calls[1].request["amount"] == 1050
    assert_nothing_secret(calls, emulator)


async def test_pay_on_the_approve_page_then_capture(emulator: PayPalEmulator) -> None:
    request = payment()
    with recording_gateway_calls() as calls:
        created = await adapter(emulator).create_payment(request)
        assert created.next_action is not None
        assert created.next_action.redirect_url
        back = await press(created.next_action.redirect_url, "Pay with PayPal")
        assert back["token"] == created.gateway_reference
        assert back["PayerID"]
        assert back["attempt"] == "att_1"  # the return URL's own query is kept
        done = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
        fetched = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert done.status is GatewayPaymentStatus.SUCCEEDED
    assert (done.amount, done.currency, done.raw_status) == (1050, "USD", "COMPLETED")
    assert done.gateway_reference == created.gateway_reference
    assert fetched.status is GatewayPaymentStatus.SUCCEEDED
    assert emulator.orders[created.gateway_reference]["status"] == "COMPLETED"
    capture_call = next(r for r in emulator.requests if r.path.endswith("/capture"))
    assert capture_call.headers["paypal-request-id"] == "att_1-capture"
    # One token for the three calls.
    assert sum(r.path == "/v1/oauth2/token" for r in emulator.requests) == 1
    assert_nothing_secret(calls, emulator)


async def test_complete_twice_captures_once(emulator: PayPalEmulator) -> None:
    request = payment()
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url
    back = await press(created.next_action.redirect_url, "Pay with PayPal")
    first = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
    again = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
    assert first == again
    assert len(emulator.captures) == 1


async def test_cancel_on_the_approve_page(emulator: PayPalEmulator) -> None:
    request = payment()
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url
    back = await press(created.next_action.redirect_url, "Cancel")
    assert back == {"attempt": "att_1", "token": created.gateway_reference}
    result = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
    assert result.status is GatewayPaymentStatus.CANCELED
    assert result.decline is not None
    assert result.decline.code is DeclineCode.CUSTOMER_CANCELED
    assert not emulator.captures
    # Asked later, PayPal still has the order waiting for the payer.
    fetched = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert fetched.status is GatewayPaymentStatus.REQUIRES_ACTION


async def test_capture_without_payer_id_of_an_approved_order(emulator: PayPalEmulator) -> None:
    # The customer approved but came back without PayPal's parameters: the order decides.
    request = payment()
    created = await adapter(emulator).create_payment(request)
    emulator.approve(created.gateway_reference)
    result = await adapter(emulator).complete_payment(request, created.gateway_reference, {})
    assert result.status is GatewayPaymentStatus.SUCCEEDED


async def test_return_for_another_order_is_refused(emulator: PayPalEmulator) -> None:
    request = payment()
    created = await adapter(emulator).create_payment(request)
    with pytest.raises(GatewayRejected):
        await adapter(emulator).complete_payment(
            request, created.gateway_reference, {"token": "5O190127TN364715T", "PayerID": "X"}
        )
    assert not emulator.captures


# --- declines and outcomes ---------------------------------------------------------


async def test_instrument_declined_on_capture(emulator: PayPalEmulator) -> None:
    emulator.capture_decline = "INSTRUMENT_DECLINED"
    request = payment()
    created = await adapter(emulator).create_payment(request)
    assert created.next_action is not None
    assert created.next_action.redirect_url
    back = await press(created.next_action.redirect_url, "Pay with PayPal")
    with recording_gateway_calls() as calls:
        result = await adapter(emulator).complete_payment(request, created.gateway_reference, back)
    assert result.status is GatewayPaymentStatus.FAILED
    assert result.decline is not None
    assert (result.decline.code, result.decline.hard, result.decline.gateway_code) == (
        DeclineCode.CARD_DECLINED,
        False,
        "INSTRUMENT_DECLINED",
    )
    assert (result.amount, result.currency) == (1050, "USD")
    assert calls[-2].response["issue"] == "INSTRUMENT_DECLINED"
    assert_nothing_secret(calls, emulator)


async def test_declined_capture_status(emulator: PayPalEmulator) -> None:
    emulator.capture_decline = "DECLINED"
    request = payment()
    created = await adapter(emulator).create_payment(request)
    emulator.approve(created.gateway_reference)
    result = await adapter(emulator).complete_payment(
        request, created.gateway_reference, {"PayerID": "P"}
    )
    assert result.status is GatewayPaymentStatus.FAILED
    assert result.decline is not None
    assert result.decline.gateway_code == "DECLINED"
    fetched = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert fetched.status is GatewayPaymentStatus.FAILED


async def test_pending_capture_is_processing(emulator: PayPalEmulator) -> None:
    emulator.capture_status = "PENDING"
    request = payment()
    created = await adapter(emulator).create_payment(request)
    emulator.approve(created.gateway_reference)
    result = await adapter(emulator).complete_payment(
        request, created.gateway_reference, {"PayerID": "P"}
    )
    assert (result.status, result.raw_status) == (GatewayPaymentStatus.PROCESSING, "PENDING")


async def test_fetch_maps_order_states(emulator: PayPalEmulator) -> None:
    request = payment()
    created = await adapter(emulator).create_payment(request)
    ref = created.gateway_reference
    waiting = await adapter(emulator).fetch_payment(request, ref)
    assert waiting.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert waiting.next_action == created.next_action
    emulator.approve(ref)
    approved = await adapter(emulator).fetch_payment(request, ref)
    assert approved.status is GatewayPaymentStatus.PROCESSING
    emulator.orders[ref]["status"] = "VOIDED"
    voided = await adapter(emulator).fetch_payment(request, ref)
    assert voided.status is GatewayPaymentStatus.CANCELED


async def test_amount_is_what_paypal_captured(emulator: PayPalEmulator) -> None:
    emulator.reported_amount = "10.49"
    request = payment()
    created = await adapter(emulator).create_payment(request)
    emulator.approve(created.gateway_reference)
    result = await adapter(emulator).complete_payment(
        request, created.gateway_reference, {"PayerID": "P"}
    )
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency) == (1049, "USD")


async def test_zero_decimal_currency(emulator: PayPalEmulator) -> None:
    request = payment(amount=1500, currency="JPY")
    created = await adapter(emulator).create_payment(request)
    order = emulator.orders[created.gateway_reference]
    assert order["purchase_units"][0]["amount"] == {"currency_code": "JPY", "value": "1500"}
    assert (created.amount, created.currency) == (1500, "JPY")
    # PayPal takes TWD in whole dollars although ISO 4217 gives it two decimals.
    whole = await adapter(emulator).create_payment(payment("att_2", amount=150000, currency="TWD"))
    assert emulator.orders[whole.gateway_reference]["purchase_units"][0]["amount"]["value"] == (
        "1500"
    )
    assert whole.amount == 150000
    with pytest.raises(GatewayRejected):
        await adapter(emulator).create_payment(payment("att_3", amount=150050, currency="TWD"))


async def test_no_return_url_is_rejected(emulator: PayPalEmulator) -> None:
    with pytest.raises(GatewayRejected):
        await adapter(emulator).create_payment(replace(payment(), return_url=None))
    assert not emulator.orders


# --- failures of the service ------------------------------------------------------


async def test_timeout_after_send_then_fetch_finds_the_one_order(emulator: PayPalEmulator) -> None:
    request = payment()
    await adapter(emulator).test_connection()  # the token is cached: only the create is slow
    emulator.answer_delay_seconds = 1.0  # PayPal makes the order; its answer comes too late
    with recording_gateway_calls() as calls, pytest.raises(GatewayTimeout) as info:
        await adapter(emulator, timeout=0.3).create_payment(request)
    assert info.value.request_sent
    assert calls[-1].outcome == "timeout"
    assert len(emulator.orders_for(request.reference)) == 1
    emulator.answer_delay_seconds = 0
    found = await adapter(emulator).fetch_payment(request, None)
    assert found.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert found.next_action is not None
    orders = emulator.orders_for(request.reference)
    assert len(orders) == 1
    assert found.gateway_reference == orders[0]["id"]
    assert found.next_action.redirect_url == (
        f"{emulator.base_url}/checkoutnow?token={orders[0]['id']}"
    )


async def test_capture_timeout_then_fetch_sees_the_capture(emulator: PayPalEmulator) -> None:
    request = payment()
    created = await adapter(emulator).create_payment(request)
    emulator.approve(created.gateway_reference)
    emulator.answer_delay_seconds = 1.0
    with pytest.raises(GatewayTimeout) as info:
        await adapter(emulator, timeout=0.3).complete_payment(
            request, created.gateway_reference, {"PayerID": "P"}
        )
    assert info.value.request_sent
    emulator.answer_delay_seconds = 0
    found = await adapter(emulator).fetch_payment(request, created.gateway_reference)
    assert found.status is GatewayPaymentStatus.SUCCEEDED
    # Completing again replays the capture: still one.
    again = await adapter(emulator).complete_payment(
        request, created.gateway_reference, {"PayerID": "P"}
    )
    assert again.status is GatewayPaymentStatus.SUCCEEDED
    assert len(emulator.captures) == 1


async def test_token_timeout_is_before_sending(emulator: PayPalEmulator) -> None:
    emulator.knobs.delay_seconds = 1.0
    with pytest.raises(GatewayTimeout) as info:
        await adapter(emulator, timeout=0.3).create_payment(payment())
    assert not info.value.request_sent


async def test_same_key_twice_makes_one_order(emulator: PayPalEmulator) -> None:
    first = await adapter(emulator).create_payment(payment())
    again = await adapter(emulator).create_payment(payment())
    assert first == again
    assert len(emulator.orders) == 1


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_unavailable(emulator: PayPalEmulator, status: int) -> None:
    await adapter(emulator).test_connection()
    emulator.knobs.fail_status = status
    with pytest.raises(GatewayUnavailable) as info:
        await adapter(emulator).create_payment(payment())
    assert type(info.value) is GatewayUnavailable
    assert str(status) in info.value.message


async def test_bad_credentials_are_misconfigured(emulator: PayPalEmulator) -> None:
    with recording_gateway_calls() as calls, pytest.raises(GatewayMisconfigured) as info:
        await adapter(emulator, secret=f"wrong-{CANARY}").create_payment(payment())
    assert CANARY not in info.value.message
    assert not emulator.orders
    assert_nothing_secret(calls, emulator)


async def test_token_is_cached_per_credentials(emulator: PayPalEmulator) -> None:
    await adapter(emulator).create_payment(payment("att_1"))
    await adapter(emulator).create_payment(payment("att_2"))
    assert sum(r.path == "/v1/oauth2/token" for r in emulator.requests) == 1
    # Same client id, another secret: the cached token is not lent to it.
    with pytest.raises(GatewayMisconfigured):
        await adapter(emulator, secret=f"other-{CANARY}").create_payment(payment("att_3"))
    assert sum(r.path == "/v1/oauth2/token" for r in emulator.requests) == 2


async def test_refused_token_is_replaced_once(emulator: PayPalEmulator) -> None:
    await adapter(emulator).create_payment(payment("att_1"))
    emulator.tokens.clear()  # PayPal forgot it (expired, revoked)
    result = await adapter(emulator).create_payment(payment("att_2"))
    assert result.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert sum(r.path == "/v1/oauth2/token" for r in emulator.requests) == 2


async def test_expired_token_is_not_used(emulator: PayPalEmulator) -> None:
    emulator.token_ttl_seconds = 1
    await adapter(emulator).create_payment(payment("att_1"))
    await asyncio.sleep(1.0)  # the token's life, less the refresh margin, is over
    await adapter(emulator).create_payment(payment("att_2"))
    assert sum(r.path == "/v1/oauth2/token" for r in emulator.requests) == 2
    emulator.token_ttl_seconds = 32400


async def test_another_apps_order_is_not_found(emulator: PayPalEmulator) -> None:
    created = await adapter(emulator).create_payment(payment())
    emulator.apps["OTHER-APP"] = f"other-{CANARY}"
    other = PayPalAdapter(
        AdapterConfig(
            GatewayType.PAYPAL,
            Environment.TEST,
            {
                "client_id": "OTHER-APP",
                "client_secret": f"other-{CANARY}",
                "api_base_url": emulator.base_url,
            },
        )
    )
    with pytest.raises(GatewayRejected):
        await other.fetch_payment(payment(), created.gateway_reference)


# --- refunds ------------------------------------------------------------------------


async def test_partial_then_full_refund(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    capture = emulator.capture_of(order_id)
    assert capture is not None
    with recording_gateway_calls() as calls:
        first = await adapter(emulator).refund_payment(refund(order_id, 300, "re_1"))
    assert (first.status, first.amount, first.currency) == (
        GatewayRefundStatus.SUCCEEDED,
        300,
        "USD",
    )
    assert capture["status"] == "PARTIALLY_REFUNDED"
    assert [c.operation for c in calls] == ["refund_lookup", "refund_payment"]
    assert calls[1].request["capture_id"] == capture["id"]
    assert_nothing_secret(calls, emulator)
    sent = next(r for r in emulator.requests if r.path.endswith("/refund"))
    assert sent.path == f"/v2/payments/captures/{capture['id']}/refund"
    assert sent.headers["paypal-request-id"] == "re_1"
    # The same key again: the same refund, nothing more refunded.
    replay = await adapter(emulator).refund_payment(refund(order_id, 300, "re_1"))
    assert replay == first
    with pytest.raises(GatewayRejected) as too_much:
        await adapter(emulator).refund_payment(refund(order_id, 751, "re_2"))
    assert too_much.value.gateway_code == "REFUND_AMOUNT_EXCEEDED"
    rest = await adapter(emulator).refund_payment(refund(order_id, 750, "re_3"))
    assert (rest.status, rest.amount) == (GatewayRefundStatus.SUCCEEDED, 750)
    assert capture["status"] == "REFUNDED"
    with pytest.raises(GatewayRejected):
        await adapter(emulator).refund_payment(refund(order_id, 1, "re_4"))
    # A refunded payment still reads as succeeded: refunds are tracked apart.
    fetched = await adapter(emulator).fetch_payment(payment(), order_id)
    assert fetched.status is GatewayPaymentStatus.SUCCEEDED


async def test_pending_refund(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    emulator.refund_status = "PENDING"
    result = await adapter(emulator).refund_payment(refund(order_id, 1050))
    assert (result.status, result.raw_status) == (GatewayRefundStatus.PENDING, "PENDING")


async def test_refund_of_an_uncaptured_order_is_rejected(emulator: PayPalEmulator) -> None:
    created = await adapter(emulator).create_payment(payment())
    with pytest.raises(GatewayRejected):
        await adapter(emulator).refund_payment(refund(created.gateway_reference, 100))


async def test_refund_in_another_currency_is_rejected(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    with pytest.raises(GatewayRejected):
        await adapter(emulator).refund_payment(refund(order_id, 100, currency="EUR"))


# --- what became of a refund (fetch_refund) --------------------------------------------


async def test_a_pending_refund_is_read_again_until_it_completes(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    emulator.refund_status = "PENDING"
    request = refund(order_id, 400)
    first = await adapter(emulator).refund_payment(request)
    assert first.status is GatewayRefundStatus.PENDING
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
    assert_nothing_secret(calls, emulator)
    read = [r for r in emulator.requests if r.path.startswith("/v2/payments/refunds/")]
    assert [r.method for r in read] == ["GET", "GET"]


async def test_a_refund_whose_answer_was_lost_is_found_in_the_order(
    emulator: PayPalEmulator,
) -> None:
    order_id = await approved_and_captured(emulator, payment())
    request = refund(order_id, 1050)  # the whole capture: it is REFUNDED afterwards
    made = await adapter(emulator).refund_payment(request)
    posts = sum(r.path.endswith("/refund") for r in emulator.requests)
    with recording_gateway_calls() as calls:
        found = await adapter(emulator).fetch_refund(request, None)
    assert found == made
    assert [c.operation for c in calls] == ["refund_lookup"]
    assert sum(r.path.endswith("/refund") for r in emulator.requests) == posts
    assert len(emulator.refunds) == 1


async def test_a_refund_that_never_arrived_is_made_once(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    request = refund(order_id, 300)
    with recording_gateway_calls() as calls:
        made = await adapter(emulator).fetch_refund(request, None)
    assert (made.status, made.amount) == (GatewayRefundStatus.SUCCEEDED, 300)
    assert [c.operation for c in calls] == ["refund_lookup", "fetch_refund"]
    sent = [r for r in emulator.requests if r.path.endswith("/refund")]
    assert [r.headers["paypal-request-id"] for r in sent] == [request.idempotency_key]
    again = await adapter(emulator).fetch_refund(request, None)
    assert again == made
    assert len(emulator.refunds) == 1
    assert_nothing_secret(calls, emulator)


async def test_fetching_an_unknown_refund_is_rejected(emulator: PayPalEmulator) -> None:
    order_id = await approved_and_captured(emulator, payment())
    with pytest.raises(GatewayRejected):
        await adapter(emulator).fetch_refund(refund(order_id, 100), "NOSUCHREFUND123")
