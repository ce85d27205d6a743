"""Stripe's answers in paygate's terms: PaymentIntents, Checkout sessions and refunds as
results, SDK errors as the error taxonomy, and the redacted summaries each call records.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import httpx
import stripe

from paygate.gateways.adapters.base import (
    DECLINE_MESSAGES,
    AdapterConfig,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    NextAction,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.stripe_declines import _declined, stripe_decline
from paygate.security.ssrf import OutboundRefused


def _is_hosted(request: PaymentRequest) -> bool:
    return request.flow is PaymentFlow.HOSTED or not request.payment_method


def _metadata(request: PaymentRequest) -> dict[str, str]:
    return {"paygate_payment": request.reference, "paygate_attempt": request.idempotency_key}


def _with_session_placeholder(url: str) -> str:
    # Stripe fills in {CHECKOUT_SESSION_ID}: it must stay literal (not percent-encoded).
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}session_id={{CHECKOUT_SESSION_ID}}"


def _intent_result(intent: stripe.PaymentIntent) -> PaymentResult:
    status = intent.status
    amount = intent.amount
    currency = (intent.currency or "").upper()

    def result(
        mapped: GatewayPaymentStatus,
        *,
        amount: int = amount,
        next_action: NextAction | None = None,
        decline: Decline | None = None,
    ) -> PaymentResult:
        return PaymentResult(
            gateway_reference=intent.id,
            status=mapped,
            amount=amount,
            currency=currency,
            next_action=next_action,
            decline=decline,
            raw_status=status,
        )

    if status == "succeeded":
        received = _get(intent, "amount_received")
        return result(
            GatewayPaymentStatus.SUCCEEDED,
            amount=received if isinstance(received, int) else amount,
        )
    if status == "requires_action":
        next_action = _get(intent, "next_action")
        if _get(next_action, "type") == "redirect_to_url":
            url = _get(_get(next_action, "redirect_to_url"), "url")
            return result(
                GatewayPaymentStatus.REQUIRES_ACTION,
                next_action=NextAction(type="redirect", redirect_url=url),
            )
        return result(
            GatewayPaymentStatus.REQUIRES_ACTION,
            next_action=NextAction(type="stripe_sdk", client_secret=intent.client_secret),
        )
    if status == "canceled":
        return result(GatewayPaymentStatus.CANCELED)
    if status == "requires_payment_method":
        error = _get(intent, "last_payment_error")
        code = _get(error, "decline_code") or _get(error, "code")
        if error is None:
            # No payment method and no error: the attempt was abandoned at Stripe.
            decline = Decline(
                code=DeclineCode.CARD_DECLINED,
                message=DECLINE_MESSAGES[DeclineCode.CARD_DECLINED],
                hard=False,
                gateway_code="requires_payment_method",
            )
        else:
            decline = stripe_decline(code)
        return result(GatewayPaymentStatus.FAILED, decline=decline)
    # processing, requires_capture, requires_confirmation: not final yet.
    return result(GatewayPaymentStatus.PROCESSING)


def _session_result(session: stripe.checkout.Session) -> PaymentResult:
    status = session.status or ""
    paid = session.payment_status
    if status == "complete":
        mapped = (
            GatewayPaymentStatus.SUCCEEDED
            if paid in ("paid", "no_payment_required")
            else GatewayPaymentStatus.PROCESSING
        )
        next_action = None
    elif status == "expired":
        mapped, next_action = GatewayPaymentStatus.CANCELED, None
    else:
        # Open: the customer has not paid yet (a declined card may be retried on the page).
        mapped = GatewayPaymentStatus.REQUIRES_ACTION
        next_action = NextAction(type="redirect", redirect_url=session.url)
    return PaymentResult(
        gateway_reference=session.id,
        status=mapped,
        amount=session.amount_total or 0,
        currency=(session.currency or "").upper(),
        next_action=next_action,
        raw_status=f"{status}/{paid}",
    )


_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "requires_action": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
    "canceled": GatewayRefundStatus.FAILED,
}


def _refund_result(refund: stripe.Refund) -> RefundResult:
    return RefundResult(
        gateway_reference=refund.id,
        status=_REFUND_STATUSES.get(refund.status or "", GatewayRefundStatus.PENDING),
        amount=refund.amount,
        currency=refund.currency.upper(),
        raw_status=refund.status or "",
    )


# --- redacted summaries: ids, amounts, statuses and codes only -----------------------


def _request_summary(request: PaymentRequest) -> dict[str, Any]:
    return {
        "reference": request.reference,
        "idempotency_key": request.idempotency_key,
        "amount": request.amount,
        "currency": request.currency,
    }


def _intent_summary(intent: stripe.PaymentIntent) -> dict[str, Any]:
    error = _get(intent, "last_payment_error")
    return {
        "id": intent.id,
        "status": intent.status,
        "amount": intent.amount,
        "currency": intent.currency,
        "latest_charge": _id_of(_get(intent, "latest_charge")),
        "next_action": _get(_get(intent, "next_action"), "type"),
        "last_payment_error": _get(error, "decline_code") or _get(error, "code"),
    }


def _session_summary(session: stripe.checkout.Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "status": session.status,
        "payment_status": session.payment_status,
        "amount_total": session.amount_total,
        "currency": session.currency,
        "payment_intent": _id_of(session.payment_intent),
    }


def _refund_summary(refund: stripe.Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "payment_intent": _id_of(_get(refund, "payment_intent")),
    }


def _error_summary(exc: stripe.StripeError) -> dict[str, Any]:
    # Never Stripe's message: an authentication error's message names part of the key.
    error = _error_body(exc)
    summary: dict[str, Any] = {
        "error_type": error.get("type"),
        "code": error.get("code") or exc.code,
        "decline_code": error.get("decline_code"),
        "param": error.get("param"),
    }
    payment_intent = error.get("payment_intent")
    if isinstance(payment_intent, dict):
        summary["payment_intent"] = payment_intent.get("id")
        summary["payment_intent_status"] = payment_intent.get("status")
    return {k: v for k, v in summary.items() if v is not None}


def _error_body(exc: stripe.StripeError) -> dict[str, Any]:
    """The `error` object of Stripe's error answer ({} when there is none)."""
    body = exc.json_body
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _http_status(obj: Any) -> int:
    response = getattr(obj, "last_response", None)
    code = getattr(response, "code", None)
    return code if isinstance(code, int) else 200


def _get(obj: Any, key: str) -> Any:
    """A field of a StripeObject (or dict), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    try:
        return obj[key]
    except KeyError:
        return None
    except TypeError:
        return getattr(obj, key, None)


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if value is None or isinstance(value, str):
        return value
    found = _get(value, "id")
    return found if isinstance(found, str) else None


def _currencies(available: Any) -> list[str]:
    """Currencies of the balance's `available` funds (a list in Stripe, a dict in localstripe)."""
    entries: Iterable[Any]
    if isinstance(available, list):
        entries = available
    elif available is None:
        entries = ()
    else:
        entries = (available,)
    found: list[str] = []
    for entry in entries:
        # StripeObject exposes keys as attributes (it is not a dict in stripe >= 13).
        currency = (
            entry.get("currency") if isinstance(entry, dict) else getattr(entry, "currency", None)
        )
        if isinstance(currency, str) and currency.upper() not in found:
            found.append(currency.upper())
    return found


def _map_stripe_error(
    exc: stripe.StripeError, config: AdapterConfig, operation: str = "test_connection"
) -> GatewayError:
    """Turn an SDK error into the taxonomy. Stripe's own message is not reused: it may
    echo part of the key."""
    status = exc.http_status
    code = exc.code
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayMisconfigured(
            f"Stripe rejected the secret key (HTTP {status}): check that it is the "
            f"{config.environment.value} mode secret key of the right account and that it "
            "has not been rolled.",
            gateway_code=code,
        )
    if isinstance(exc, stripe.APIConnectionError):
        # The SDK wraps the httpx error; its type tells a timeout from a refused connection.
        cause = exc.__cause__
        if isinstance(cause, OutboundRefused):
            return GatewayMisconfigured(
                "paygate refused to call Stripe: its address points at a private address."
            )
        if isinstance(cause, httpx.TimeoutException):
            sent = not isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout)
            return GatewayTimeout(
                f"Stripe did not answer within {config.timeout_seconds:g} s.",
                request_sent=sent,
            )
        # The SDK does not retry (max_network_retries=0): a refused connection sent nothing.
        return GatewayUnavailable(
            "Stripe could not be reached (connection failed).",
            network=True,
            request_sent=not isinstance(cause, httpx.ConnectError),
        )
    if isinstance(exc, stripe.CardError):
        error = _error_body(exc)
        decline = stripe_decline(error.get("decline_code") or code)
        return _declined(decline, _id_of(error.get("payment_intent")))
    if isinstance(exc, stripe.RateLimitError):
        # Stripe does not act on a rate-limited request.
        return GatewayUnavailable(
            "Stripe is rate limiting requests (HTTP 429).", gateway_code=code, refused=True
        )
    if status == 409:
        # Another request with this idempotency key is still running at Stripe.
        return GatewayUnavailable(
            "Stripe is still processing a request with this idempotency key (HTTP 409).",
            gateway_code=code,
        )
    if status is None or status >= 500:
        return GatewayUnavailable(
            f"Stripe answered with a server error (HTTP {status}).", gateway_code=code
        )
    if status == 404 and operation == "test_connection":
        return GatewayMisconfigured(
            "Stripe answered 404 for the balance: check the API base URL.", gateway_code=code
        )
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayRejected(
            f"Stripe refused to reuse the idempotency key for a different request (HTTP {status}).",
            gateway_code="idempotency_error",
        )
    if status == 404:
        return GatewayRejected(
            f"Stripe has no such object for {operation} (HTTP 404).", gateway_code=code
        )
    return GatewayRejected(f"Stripe refused the request (HTTP {status}).", gateway_code=code)
