"""The Stripe adapter's payment operations, through the real SDK, against localstripe.

`stripe_api` is the whole Stripe API at one base URL (localstripe behind the emulator in
tests/fakes/stripe_checkout.py, which adds Checkout, Stripe's Idempotency-Key replay and
fault knobs); `stripe_faults` is localstripe behind a plain proxy with the knobs, without
idempotency, as localstripe itself behaves.

Every secret key contains CANARY; the `recorded` fixture fails a test when a recorded
gateway call or a log line holds the key, a card number, a token or a client secret.
"""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator
from typing import Any

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
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.adapters.stripe import StripeAdapter
from paygate.gateways.adapters.stripe_declines import stripe_decline
from paygate.gateways.adapters.stripe_spec import SPEC
from paygate.gateways.configuration import check_configuration
from paygate.kit.errors import Problem
from paygate.web.render import templates
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.fakes.stripe_faults import StripeFaultProxy
from tests.gateways.adapters.recording import Recorded, recording

CANARY = "CANARY5e2b8d"
SECRET_KEY = f"sk_test_{CANARY}"
HELPER_KEY = "sk_test_helper"
SHORT_TIMEOUT = 0.3
SLOW_ANSWER = 1.5
CARD_NUMBERS = ("4242424242424242", "4000000000000341", "4000002500003155")


@pytest.fixture
def recorded() -> Iterator[Recorded]:
    with recording([CANARY, "_secret_", *CARD_NUMBERS]) as found:
        yield found


def adapter(base_url: str, *, key: str = SECRET_KEY, timeout: float = 5.0) -> StripeAdapter:
    config = AdapterConfig(
        gateway_type=GatewayType.STRIPE,
        environment=Environment.TEST,
        values={
            "secret_key": key,
            "publishable_key": "pk_test_123",
            "api_base_url": base_url,
        },
        timeout_seconds=timeout,
    )
    built = build_adapter(config)
    assert isinstance(built, StripeAdapter)
    return built


def payment(
    payment_method: str | None = "pm_card_visa",
    *,
    amount: int = 1050,
    currency: str = "USD",
    key: str | None = None,
    **kwargs: Any,
) -> PaymentRequest:
    return PaymentRequest(
        reference=f"pay_{secrets.token_hex(6)}",
        idempotency_key=key or f"att_{secrets.token_hex(8)}",
        amount=amount,
        currency=currency,
        payment_method=payment_method,
        **kwargs,
    )


def hosted(**kwargs: Any) -> PaymentRequest:
    return payment(
        None,
        flow=PaymentFlow.HOSTED,
        return_url="https://shop.example/pay/return?invoice=inv_1",
        cancel_url="https://shop.example/pay/cancel",
        description="Invoice INV-0042",
        **kwargs,
    )


# --- localstripe, read directly ------------------------------------------------------


async def _list_all(base_url: str, path: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    params: dict[str, Any] = {"limit": 100}
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {HELPER_KEY}"}, timeout=30
    ) as client:
        while True:
            page = (await client.get(path, params=params)).json()
            found += page["data"]
            if not page["has_more"] or not page["data"]:
                return found
            params["starting_after"] = page["data"][-1]["id"]


async def intents_for(localstripe_url: str, attempt: str) -> list[dict[str, Any]]:
    """Every PaymentIntent localstripe holds for one attempt."""
    intents = await _list_all(localstripe_url, "/v1/payment_intents")
    return [i for i in intents if i["metadata"].get("paygate_attempt") == attempt]


async def charges_for(localstripe_url: str, intent_ids: set[str]) -> list[dict[str, Any]]:
    charges = await _list_all(localstripe_url, "/v1/charges")
    return [c for c in charges if c["payment_intent"] in intent_ids]


async def card_token(localstripe_url: str, number: str) -> str:
    """What Stripe.js `createToken(card)` gets: a token made with the publishable key."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{localstripe_url}/v1/tokens",
            data={
                "card[number]": number,
                "card[exp_month]": "12",
                "card[exp_year]": "34",
                "card[cvc]": "123",
                "key": "pk_test_123",
            },
        )
    answer.raise_for_status()
    token: str = answer.json()["id"]
    return token


async def authenticate(localstripe_url: str, intent_id: str, client_secret: str, ok: bool) -> None:
    """What localstripe's fake 3-D Secure modal does on its two buttons."""
    async with httpx.AsyncClient(timeout=10) as client:
        answer = await client.post(
            f"{localstripe_url}/v1/payment_intents/{intent_id}/_authenticate",
            data={
                "client_secret": client_secret,
                "success": "true" if ok else "false",
                "key": "pk_test_123",
            },
        )
    answer.raise_for_status()


async def eventually_one_intent(localstripe_url: str, attempt: str) -> dict[str, Any]:
    """Wait (bounded) until the late request has reached localstripe."""
    for _ in range(50):
        found = await intents_for(localstripe_url, attempt)
        if found:
            assert len(found) == 1
            return found[0]
        await asyncio.sleep(0.1)
    raise AssertionError("the PaymentIntent never reached localstripe")


# --- direct payments -----------------------------------------------------------------


async def test_payment_method_succeeds(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    request = payment("pm_card_visa")
    result = await adapter(stripe_api.base_url).create_payment(request)
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency) == (1050, "USD")
    assert result.gateway_reference.startswith("pi_")
    assert result.next_action is None
    assert result.decline is None
    [intent] = await intents_for(localstripe_url, request.idempotency_key)
    assert intent["id"] == result.gateway_reference
    assert intent["metadata"]["paygate_payment"] == request.reference
    [call] = recorded.calls
    assert (call.operation, call.outcome, call.http_status) == ("create_payment", "ok", 200)
    assert call.request["idempotency_key"] == request.idempotency_key
    assert call.response["status"] == "succeeded"
    # The attempt's key went to Stripe as the Idempotency-Key.
    sent = [r for r in stripe_api.requests if r.path == "/v1/payment_intents"]
    assert sent[-1].headers["idempotency-key"] == request.idempotency_key


async def test_stripe_js_token_succeeds(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    token = await card_token(localstripe_url, "4242424242424242")
    recorded.forbid(token)
    request = payment(token, amount=2000, currency="EUR")
    result = await adapter(stripe_api.base_url).create_payment(request)
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency) == (2000, "EUR")
    assert recorded.operations() == ["create_payment_method", "create_payment"]
    assert len(await intents_for(localstripe_url, request.idempotency_key)) == 1


@pytest.mark.parametrize("card", ["pm_card_chargeCustomerFail", "4000000000000341"])
async def test_declined_card_raises_then_fetch_reports_failed(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded, card: str
) -> None:
    method = card if card.startswith("pm_") else await card_token(localstripe_url, card)
    recorded.forbid(method if method.startswith("tok_") else None)
    request = payment(method)
    gateway = adapter(stripe_api.base_url)
    with pytest.raises(GatewayDeclined) as info:
        await gateway.create_payment(request)
    declined = info.value
    assert declined.decline_code == DeclineCode.CARD_DECLINED.value
    assert declined.hard is True
    assert declined.gateway_code == "card_declined"
    assert declined.message == "The card was declined."
    assert recorded.calls[-1].outcome == "declined"
    assert recorded.calls[-1].http_status == 402

    # Asked later without a reference, the same attempt reads as failed, not raised.
    fetched = await gateway.fetch_payment(request, None)
    assert fetched.status is GatewayPaymentStatus.FAILED
    assert fetched.decline is not None
    assert fetched.decline.code is DeclineCode.CARD_DECLINED
    assert fetched.decline.gateway_code == "card_declined"
    assert (fetched.amount, fetched.currency) == (1050, "USD")
    intents = await intents_for(localstripe_url, request.idempotency_key)
    assert [i["id"] for i in intents] == [fetched.gateway_reference]


@pytest.mark.parametrize("passes", [True, False])
async def test_three_d_secure(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded, passes: bool
) -> None:
    token = await card_token(localstripe_url, "4000002500003155")
    recorded.forbid(token)
    request = payment(token, return_url="https://shop.example/pay/return")
    gateway = adapter(stripe_api.base_url)
    started = await gateway.create_payment(request)
    assert started.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert started.next_action is not None
    assert started.next_action.type == "stripe_sdk"
    secret = started.next_action.client_secret
    assert secret is not None
    assert secret.startswith(started.gateway_reference + "_secret_")
    recorded.forbid(secret)

    # The page's stripe.confirmCardPayment(client_secret) shows the modal; a button is pressed.
    await authenticate(localstripe_url, started.gateway_reference, secret, passes)
    done = await gateway.complete_payment(request, started.gateway_reference, {})
    assert done.gateway_reference == started.gateway_reference
    assert (done.amount, done.currency) == (1050, "USD")
    if passes:
        assert done.status is GatewayPaymentStatus.SUCCEEDED
        assert done.decline is None
    else:
        assert done.status is GatewayPaymentStatus.FAILED
        assert done.decline is not None
        assert done.decline.code is DeclineCode.AUTHENTICATION_FAILED
        assert done.decline.hard is False
        assert done.decline.gateway_code == "payment_intent_authentication_failure"


async def test_result_reports_what_stripe_holds(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    # A PaymentIntent for this attempt exists at Stripe with another amount.
    request = payment(amount=1000)
    async with httpx.AsyncClient(
        base_url=localstripe_url, headers={"Authorization": f"Bearer {HELPER_KEY}"}
    ) as client:
        made = await client.post(
            "/v1/payment_intents",
            data={
                "amount": "999",
                "currency": "eur",
                "payment_method": "pm_card_visa",
                "confirm": "true",
                "metadata[paygate_attempt]": request.idempotency_key,
            },
        )
    made.raise_for_status()
    result = await adapter(stripe_api.base_url).fetch_payment(request, None)
    assert result.gateway_reference == made.json()["id"]
    # Never the requested amount: the payments service compares the two.
    assert (result.amount, result.currency) == (999, "EUR")


# --- unknown outcomes ----------------------------------------------------------------


@pytest.mark.parametrize("idempotency", [True, False], ids=["replaying", "like-localstripe"])
async def test_late_answer_times_out_then_fetch_finds_the_one_payment(
    stripe_api: StripeCheckoutEmulator,
    localstripe_url: str,
    recorded: Recorded,
    idempotency: bool,
) -> None:
    stripe_api.honour_idempotency = idempotency
    stripe_api.answer_delay_seconds = SLOW_ANSWER
    request = payment()
    with pytest.raises(GatewayTimeout) as info:
        await adapter(stripe_api.base_url, timeout=SHORT_TIMEOUT).create_payment(request)
    assert info.value.request_sent is True
    assert recorded.calls[-1].outcome == "timeout"
    stripe_api.answer_delay_seconds = 0
    charged = await eventually_one_intent(localstripe_url, request.idempotency_key)

    result = await adapter(stripe_api.base_url).fetch_payment(request, None)
    assert result.gateway_reference == charged["id"]
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    assert (result.amount, result.currency) == (1050, "USD")
    # Found by its tag: no second create was sent.
    assert recorded.operations()[-1] == "find_payment"
    intents = await intents_for(localstripe_url, request.idempotency_key)
    assert len(intents) == 1
    assert len(await charges_for(localstripe_url, {charged["id"]})) == 1


async def test_lost_request_then_fetch_creates_it_once(
    stripe_faults: StripeFaultProxy, localstripe_url: str, recorded: Recorded
) -> None:
    # Delayed before it is forwarded, the request dies with the client's connection: the
    # payment was never made (localstripe behind this proxy ignores Idempotency-Key).
    stripe_faults.knobs.delay_seconds = SLOW_ANSWER
    request = payment()
    with pytest.raises(GatewayTimeout):
        await adapter(stripe_faults.base_url, timeout=SHORT_TIMEOUT).create_payment(request)
    stripe_faults.knobs.delay_seconds = 0

    result = await adapter(stripe_faults.base_url).fetch_payment(request, None)
    assert result.status is GatewayPaymentStatus.SUCCEEDED
    # Not found by its tag, so the same create was re-issued with the same key.
    assert recorded.operations()[-2:] == ["find_payment", "create_payment"]
    # Long enough for the parked request to have ended one way or the other.
    await asyncio.sleep(SLOW_ANSWER)
    intents = await intents_for(localstripe_url, request.idempotency_key)
    assert [i["id"] for i in intents] == [result.gateway_reference]
    # Asked again, it is found, not made again.
    again = await adapter(stripe_faults.base_url).fetch_payment(request, None)
    assert again.gateway_reference == result.gateway_reference
    assert len(await intents_for(localstripe_url, request.idempotency_key)) == 1


async def test_idempotent_create_charges_once(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    request = payment()
    gateway = adapter(stripe_api.base_url)
    first = await gateway.create_payment(request)
    second = await gateway.create_payment(request)
    assert second == first
    intents = await intents_for(localstripe_url, request.idempotency_key)
    assert [i["id"] for i in intents] == [first.gateway_reference]
    assert len(await charges_for(localstripe_url, {first.gateway_reference})) == 1


async def test_same_key_for_another_request_is_rejected(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    request = payment()
    gateway = adapter(stripe_api.base_url)
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
    assert info.value.gateway_code == "idempotency_error"


@pytest.mark.parametrize("status", [500, 503])
async def test_server_error_is_unavailable(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded, status: int
) -> None:
    stripe_api.knobs.fail_status = status
    request = payment()
    with pytest.raises(GatewayUnavailable) as info:
        await adapter(stripe_api.base_url).create_payment(request)
    assert type(info.value) is GatewayUnavailable
    assert str(status) in info.value.message
    # No SDK retries, and nothing was charged.
    assert len(stripe_api.requests) == 1
    assert await intents_for(localstripe_url, request.idempotency_key) == []
    assert recorded.calls[-1].http_status == status


async def test_bad_key_is_misconfigured(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url, key=f"pk_test_{CANARY}")
    with pytest.raises(GatewayMisconfigured) as info:
        await gateway.create_payment(payment())
    assert CANARY not in info.value.message
    assert info.value.message.startswith("Stripe rejected the secret key (HTTP 401)")
    with pytest.raises(GatewayMisconfigured):
        await gateway.create_payment(hosted())


async def test_unknown_reference_is_rejected(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    with pytest.raises(GatewayRejected):
        await gateway.fetch_payment(payment(), "pi_doesnotexist")
    with pytest.raises(GatewayRejected):
        await gateway.complete_payment(hosted(), "cs_test_doesnotexist", {})


# --- refunds -------------------------------------------------------------------------


async def test_partial_then_full_refund(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    paid = await gateway.create_payment(payment(amount=1050))

    def refund(amount: int, key: str) -> RefundRequest:
        return RefundRequest(
            reference=f"re_{secrets.token_hex(4)}",
            idempotency_key=key,
            gateway_payment_reference=paid.gateway_reference,
            amount=amount,
            currency="USD",
            reason="requested_by_customer",
        )

    partial = refund(300, "rk-partial-" + secrets.token_hex(4))
    first = await gateway.refund_payment(partial)
    assert first.status is GatewayRefundStatus.SUCCEEDED
    assert (first.amount, first.currency) == (300, "USD")
    assert first.gateway_reference.startswith("re_")
    # The same refund retried with its key is the same refund.
    assert await gateway.refund_payment(partial) == first

    rest = await gateway.refund_payment(refund(750, "rk-rest-" + secrets.token_hex(4)))
    assert rest.status is GatewayRefundStatus.SUCCEEDED
    assert rest.amount == 750
    assert rest.gateway_reference != first.gateway_reference
    call = recorded.calls[-1]
    assert call.operation == "refund_payment"
    assert call.response["amount"] == 750


async def test_refund_of_a_failed_payment_is_rejected(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    request = payment("pm_card_chargeCustomerFail")
    with pytest.raises(GatewayDeclined):
        await gateway.create_payment(request)
    [intent] = await intents_for(localstripe_url, request.idempotency_key)
    with pytest.raises(GatewayRejected):
        await gateway.refund_payment(
            RefundRequest("re_x", "rk-" + secrets.token_hex(4), intent["id"], 100, "USD")
        )


# --- Stripe Checkout (hosted) --------------------------------------------------------


async def _open_page(url: str) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as client:
        return await client.get(url)


async def _press(url: str, action: str, card: str = "pm_card_visa") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10, follow_redirects=False) as client:
        return await client.post(url, data={"action": action, "card": card})


async def test_checkout_round_trip(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    request = hosted(amount=2599, currency="EUR")
    gateway = adapter(stripe_api.base_url)
    started = await gateway.create_payment(request)
    assert started.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert started.gateway_reference.startswith("cs_test_")
    assert (started.amount, started.currency) == (2599, "EUR")
    assert started.next_action is not None
    assert started.next_action.type == "redirect"
    url = started.next_action.redirect_url
    assert url is not None
    assert url.startswith(stripe_api.base_url)
    session = stripe_api.sessions[started.gateway_reference]
    assert session["client_reference_id"] == request.reference
    assert session["success_url"] == (
        "https://shop.example/pay/return?invoice=inv_1&session_id={CHECKOUT_SESSION_ID}"
    )
    assert session["cancel_url"] == "https://shop.example/pay/cancel"

    page = await _open_page(url)
    assert page.status_code == 200
    assert "Invoice INV-0042" in page.text
    assert 'value="pay">Pay</button>' in page.text
    assert 'value="cancel">Cancel</button>' in page.text
    back = await _press(url, "pay")
    assert back.status_code == 303
    assert back.headers["location"] == (
        f"https://shop.example/pay/return?invoice=inv_1&session_id={started.gateway_reference}"
    )

    done = await gateway.complete_payment(
        request, started.gateway_reference, {"session_id": started.gateway_reference}
    )
    assert done.status is GatewayPaymentStatus.SUCCEEDED
    assert done.gateway_reference == started.gateway_reference
    assert (done.amount, done.currency) == (2599, "EUR")
    [intent] = await intents_for(localstripe_url, request.idempotency_key)
    assert intent["status"] == "succeeded"
    assert intent["id"] == stripe_api.sessions[started.gateway_reference]["payment_intent"]

    # A Checkout payment is refunded through its session's PaymentIntent.
    refund = await gateway.refund_payment(
        RefundRequest("re_1", "rk-" + secrets.token_hex(4), started.gateway_reference, 2599, "EUR")
    )
    assert refund.status is GatewayRefundStatus.SUCCEEDED
    assert (refund.amount, refund.currency) == (2599, "EUR")


async def test_checkout_cancel_and_decline_leave_it_open(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    request = hosted()
    gateway = adapter(stripe_api.base_url)
    started = await gateway.create_payment(request)
    assert started.next_action is not None
    assert started.next_action.redirect_url
    url = started.next_action.redirect_url

    canceled = await _press(url, "cancel")
    assert canceled.status_code == 303
    assert canceled.headers["location"] == "https://shop.example/pay/cancel"
    declined = await _press(url, "pay", card="pm_card_chargeCustomerFail")
    assert declined.status_code == 402
    assert "declined" in declined.text

    still = await gateway.complete_payment(request, started.gateway_reference, {})
    assert still.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert still.next_action is not None
    assert still.next_action.redirect_url == url


async def test_checkout_late_answer_then_fetch_replays_the_session(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    stripe_api.answer_delay_seconds = SLOW_ANSWER
    request = hosted()
    with pytest.raises(GatewayTimeout):
        await adapter(stripe_api.base_url, timeout=SHORT_TIMEOUT).create_payment(request)
    stripe_api.answer_delay_seconds = 0
    for _ in range(50):
        if stripe_api.sessions:
            break
        await asyncio.sleep(0.05)
    [made] = stripe_api.sessions
    found = await adapter(stripe_api.base_url).fetch_payment(request, None)
    assert found.gateway_reference == made
    assert found.status is GatewayPaymentStatus.REQUIRES_ACTION
    assert list(stripe_api.sessions) == [made]


async def test_checkout_needs_a_return_url(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    request = payment(None, flow=PaymentFlow.HOSTED)
    with pytest.raises(GatewayRejected):
        await adapter(stripe_api.base_url).create_payment(request)
    assert stripe_api.requests == []


# --- the decline map and the configuration ---------------------------------------


@pytest.mark.parametrize(
    ("stripe_code", "code", "hard"),
    [
        ("card_declined", DeclineCode.CARD_DECLINED, True),
        ("generic_decline", DeclineCode.CARD_DECLINED, True),
        ("do_not_honor", DeclineCode.CARD_DECLINED, True),
        ("insufficient_funds", DeclineCode.INSUFFICIENT_FUNDS, False),
        ("expired_card", DeclineCode.EXPIRED_CARD, True),
        ("incorrect_cvc", DeclineCode.INCORRECT_CVC, True),
        ("processing_error", DeclineCode.PROCESSING_ERROR, False),
        ("fraudulent", DeclineCode.FRAUD_SUSPECTED, True),
        ("stolen_card", DeclineCode.FRAUD_SUSPECTED, True),
        ("lost_card", DeclineCode.FRAUD_SUSPECTED, True),
        ("payment_intent_authentication_failure", DeclineCode.AUTHENTICATION_FAILED, False),
        ("something_new", DeclineCode.CARD_DECLINED, True),
    ],
)
def test_decline_map(stripe_code: str, code: DeclineCode, hard: bool) -> None:
    decline = stripe_decline(stripe_code)
    assert (decline.code, decline.hard, decline.gateway_code) == (code, hard, stripe_code)
    assert decline.message


def test_payment_page_flow_field() -> None:
    field = SPEC.field("payment_page_flow")
    assert field is not None
    assert field.kind.value == "choice"
    assert field.choices == ("elements", "checkout")
    assert field.required is False
    assert not field.secret


def test_payment_page_flow_must_be_a_choice() -> None:
    given = {"secret_key": "sk_test_abc", "publishable_key": "pk_test_abc"}
    checked = check_configuration(
        SPEC, Environment.TEST, {**given, "payment_page_flow": "checkout"}
    )
    assert checked.public["payment_page_flow"] == "checkout"
    # Optional: left out, nothing is stored and the adapter's default applies.
    assert "payment_page_flow" not in check_configuration(SPEC, Environment.TEST, given).public
    with pytest.raises(Problem) as info:
        check_configuration(SPEC, Environment.TEST, {**given, "payment_page_flow": "iframe"})
    [error] = info.value.errors
    assert error.field == "configuration.payment_page_flow"
    assert error.message == "must be one of: elements, checkout"


def test_choice_field_renders_as_a_select() -> None:
    macros = templates.get_template("_macros.html").module
    field = SPEC.field("payment_page_flow")
    assert field is not None
    rendered = str(
        macros.select(  # type: ignore[attr-defined]
            "configuration.payment_page_flow",
            field.label,
            {},
            field.choices,
            value="checkout",
            help=field.help,
        )
    )
    assert '<label for="f-configuration-payment_page_flow">Payment page</label>' in rendered
    assert '<select id="f-configuration-payment_page_flow"' in rendered
    assert 'name="configuration.payment_page_flow"' in rendered
    assert '<option value="elements">elements</option>' in rendered
    assert '<option value="checkout" selected>checkout</option>' in rendered


async def test_an_abandoned_payment_is_withdrawn(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    token = await card_token(localstripe_url, "4000002500003155")
    request = payment(token, return_url="https://shop.example/pay/return")
    started = await gateway.create_payment(request)
    assert started.status is GatewayPaymentStatus.REQUIRES_ACTION
    withdrawn = await gateway.cancel_payment(request, started.gateway_reference)
    assert withdrawn.status is GatewayPaymentStatus.CANCELED
    read = await gateway.fetch_payment(request, started.gateway_reference)
    assert read.status is GatewayPaymentStatus.CANCELED

    session_request = hosted(amount=2599, currency="EUR")
    session = await gateway.create_payment(session_request)
    expired = await gateway.cancel_payment(session_request, session.gateway_reference)
    assert expired.status is GatewayPaymentStatus.CANCELED


async def test_a_paid_payment_is_not_withdrawn(stripe_api: StripeCheckoutEmulator) -> None:
    gateway = adapter(stripe_api.base_url)
    request = payment("pm_card_visa")
    paid = await gateway.create_payment(request)
    assert paid.status is GatewayPaymentStatus.SUCCEEDED
    still = await gateway.cancel_payment(request, paid.gateway_reference)
    assert still.status is GatewayPaymentStatus.SUCCEEDED


# --- what became of a refund (fetch_refund) --------------------------------------------


def refund_request(paid_reference: str, amount: int) -> RefundRequest:
    refund_id = f"re_{secrets.token_hex(6)}"
    return RefundRequest(
        reference=refund_id,
        idempotency_key=refund_id,
        gateway_payment_reference=paid_reference,
        amount=amount,
        currency="USD",
        reason="requested_by_customer",
    )


async def refunds_for(localstripe_url: str, reference: str) -> list[dict[str, Any]]:
    refunds = await _list_all(localstripe_url, "/v1/refunds")
    return [r for r in refunds if r["metadata"].get("paygate_refund") == reference]


async def test_a_pending_refund_is_read_again_until_it_succeeds(
    stripe_api: StripeCheckoutEmulator, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    paid = await gateway.create_payment(payment(amount=1050))
    stripe_api.refund_status = "pending"
    request = refund_request(paid.gateway_reference, 400)
    first = await gateway.refund_payment(request)
    assert (first.status, first.raw_status) == (GatewayRefundStatus.PENDING, "pending")
    still = await gateway.fetch_refund(request, first.gateway_reference)
    assert still.status is GatewayRefundStatus.PENDING
    stripe_api.complete_refunds()
    done = await gateway.fetch_refund(request, first.gateway_reference)
    assert (done.status, done.amount, done.currency) == (GatewayRefundStatus.SUCCEEDED, 400, "USD")
    assert done.gateway_reference == first.gateway_reference
    call = recorded.calls[-1]
    assert call.operation == "fetch_refund"
    assert call.request["refund"] == first.gateway_reference
    assert (call.response["id"], call.response["status"]) == (first.gateway_reference, "succeeded")


async def test_a_refund_answered_late_is_found_by_its_tag(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    # Without Stripe's idempotency (localstripe's own behaviour), only the tag finds it.
    stripe_api.honour_idempotency = False
    paid = await adapter(stripe_api.base_url).create_payment(payment(amount=1050))
    request = refund_request(paid.gateway_reference, 300)
    stripe_api.answer_delay_seconds = SLOW_ANSWER
    with pytest.raises(GatewayTimeout) as info:
        await adapter(stripe_api.base_url, timeout=SHORT_TIMEOUT).refund_payment(request)
    assert info.value.request_sent is True
    stripe_api.answer_delay_seconds = 0
    for _ in range(50):
        if await refunds_for(localstripe_url, request.reference):
            break
        await asyncio.sleep(0.1)
    [made] = await refunds_for(localstripe_url, request.reference)

    found = await adapter(stripe_api.base_url).fetch_refund(request, None)
    assert (found.gateway_reference, found.status) == (made["id"], GatewayRefundStatus.SUCCEEDED)
    assert found.amount == 300
    assert recorded.operations()[-1] == "find_refund"
    assert recorded.calls[-1].request["payment_intent"] == paid.gateway_reference
    assert len(await refunds_for(localstripe_url, request.reference)) == 1


async def test_a_refund_that_never_arrived_is_made_once(
    stripe_api: StripeCheckoutEmulator, localstripe_url: str, recorded: Recorded
) -> None:
    gateway = adapter(stripe_api.base_url)
    paid = await gateway.create_payment(payment(amount=1050))
    request = refund_request(paid.gateway_reference, 250)
    made = await gateway.fetch_refund(request, None)
    assert (made.status, made.amount) == (GatewayRefundStatus.SUCCEEDED, 250)
    assert recorded.operations()[-2:] == ["find_refund", "fetch_refund"]
    again = await gateway.fetch_refund(request, None)
    assert again.gateway_reference == made.gateway_reference
    assert recorded.operations()[-1] == "find_refund"
    assert len(await refunds_for(localstripe_url, request.reference)) == 1
