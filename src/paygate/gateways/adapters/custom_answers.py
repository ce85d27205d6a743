"""A custom gateway's answers in paygate's terms (docs/custom-gateway.md): payments and
refunds as results, the contract's decline codes, error bodies as the error taxonomy, and
the redacted summaries each call records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import httpx

from paygate.gateways.adapters.base import (
    DECLINE_MESSAGES,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    NextAction,
    PaymentResult,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import json_object, record_response

REFUND_REASONS = frozenset({"requested_by_customer", "duplicate", "fraudulent"})

# The contract's decline codes and whether each is hard (section 5).
_DECLINES: dict[str, tuple[DeclineCode, bool]] = {
    "card_declined": (DeclineCode.CARD_DECLINED, True),
    "insufficient_funds": (DeclineCode.INSUFFICIENT_FUNDS, False),
    "expired_card": (DeclineCode.EXPIRED_CARD, True),
    "incorrect_cvc": (DeclineCode.INCORRECT_CVC, True),
    "processing_error": (DeclineCode.PROCESSING_ERROR, False),
    "fraud_suspected": (DeclineCode.FRAUD_SUSPECTED, True),
}

T = TypeVar("T")
S = TypeVar("S")

_STATUSES = {
    "succeeded": GatewayPaymentStatus.SUCCEEDED,
    "failed": GatewayPaymentStatus.FAILED,
    "requires_action": GatewayPaymentStatus.REQUIRES_ACTION,
    "processing": GatewayPaymentStatus.PROCESSING,
}

_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
}


def custom_decline(code: str | None) -> Decline:
    """paygate's reading of the contract's decline code (unknown: card_declined, hard)."""
    mapped, hard = _DECLINES.get(code or "", (DeclineCode.CARD_DECLINED, True))
    return Decline(code=mapped, message=DECLINE_MESSAGES[mapped], hard=hard, gateway_code=code)


def _answer(
    response: httpx.Response,
    summary: Callable[[dict[str, Any]], dict[str, Any]],
    result: Callable[[dict[str, Any]], T],
) -> T:
    """A payment or refund object answer as a result (inside `send`: records the answer)."""
    body = json_object(response)
    if response.status_code not in (200, 201):
        record_response(response.status_code, _error_summary(body))
        raise _map_payment_error(response, body)
    record_response(response.status_code, summary(body))
    return result(body)


def _payment_answer(response: httpx.Response) -> PaymentResult:
    return _answer(response, _payment_summary, _payment_result)


def _refund_answer(response: httpx.Response) -> RefundResult:
    return _answer(response, _refund_summary, _refund_result)


def _object_fields(
    body: dict[str, Any], statuses: Mapping[str, S], what: str
) -> tuple[str, S, int, str]:
    """The contract object's id, status, amount and currency. Something answered, but not
    with the contract's object: the outcome is unknown, so it is not read as a failure."""
    object_id = body.get("id")
    status = statuses.get(str(body.get("status")))
    amount = body.get("amount")
    currency = body.get("currency")
    if (
        not isinstance(object_id, str)
        or status is None
        or not isinstance(amount, int)
        or isinstance(amount, bool)
        or not isinstance(currency, str)
    ):
        raise GatewayUnavailable(f"The custom gateway answered without a valid {what} object.")
    return object_id, status, amount, currency.upper()


def _payment_result(body: dict[str, Any]) -> PaymentResult:
    payment_id, status, amount, currency = _object_fields(body, _STATUSES, "payment")
    next_action = None
    decline = None
    if status is GatewayPaymentStatus.REQUIRES_ACTION:
        redirect_url = body.get("redirect_url")
        if not isinstance(redirect_url, str) or not redirect_url:
            raise GatewayUnavailable(
                "The custom gateway asked for a customer action without a redirect_url."
            )
        next_action = NextAction(type="redirect", redirect_url=redirect_url)
    elif status is GatewayPaymentStatus.FAILED:
        code = body.get("decline_code")
        decline = custom_decline(code if isinstance(code, str) else None)
    return PaymentResult(
        gateway_reference=payment_id,
        status=status,
        amount=amount,
        currency=currency,
        next_action=next_action,
        decline=decline,
        raw_status=str(body.get("status")),
    )


def _refund_result(body: dict[str, Any]) -> RefundResult:
    refund_id, status, amount, currency = _object_fields(body, _REFUND_STATUSES, "refund")
    return RefundResult(
        gateway_reference=refund_id,
        status=status,
        amount=amount,
        currency=currency,
        raw_status=str(body.get("status")),
    )


def _map_payment_error(response: httpx.Response, body: dict[str, Any]) -> GatewayError:
    """A non-2xx answer to a payment or refund call. The gateway's message is not reused."""
    status = response.status_code
    code = _error_type(body)
    if status in (401, 403):
        return GatewayMisconfigured(
            f"The custom gateway rejected the API key (HTTP {status}).", gateway_code=code
        )
    if status == 429 or status >= 500:
        # The contract: a gateway answers 429 or 503 only when it did nothing.
        return GatewayUnavailable(
            f"The custom gateway answered with HTTP {status}.",
            gateway_code=code,
            refused=status in (429, 503),
        )
    if status == 404 and code is None:
        # Not the contract's error body: something else answers at this base URL.
        return GatewayMisconfigured(
            "The custom gateway has no payments endpoint at this base URL (HTTP 404)."
        )
    param = _error_param(body)
    detail = f" (HTTP {status}, {code}" + (f", param {param})" if param else ")")
    if status == 404:
        return GatewayRejected("The custom gateway has no such payment" + detail, gateway_code=code)
    if code == "idempotency_conflict":
        return GatewayRejected(
            "The custom gateway saw this idempotency key with a different request" + detail,
            gateway_code=code,
        )
    return GatewayRejected("The custom gateway refused the request" + detail, gateway_code=code)


def _error_param(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("param"), str):
        return str(error["param"])
    return None


# --- redacted summaries: ids, amounts, statuses and codes only -----------------------


def _payment_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": body.get("id"),
        "status": body.get("status"),
        "amount": body.get("amount"),
        "currency": body.get("currency"),
        "amount_refunded": body.get("amount_refunded"),
        "decline_code": body.get("decline_code"),
        "redirect": bool(body.get("redirect_url")),
    }


def _refund_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": body.get("id"),
        "payment_id": body.get("payment_id"),
        "status": body.get("status"),
        "amount": body.get("amount"),
        "currency": body.get("currency"),
    }


def _error_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {"error_type": _error_type(body), "param": _error_param(body)}


def _error_type(body: dict[str, Any]) -> str | None:
    # The contract's error body: {"error": {"type": ..., "message": ..., "param": ...}}.
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return None


def _map_health_error(response: httpx.Response, body: dict[str, Any]) -> GatewayError:
    status = response.status_code
    code = _error_type(body)
    if status in (401, 403):
        return GatewayMisconfigured(
            f"The custom gateway rejected the API key (HTTP {status}).", gateway_code=code
        )
    if status == 200:
        reported = body.get("status")
        if isinstance(reported, str):
            return GatewayUnavailable(
                f"The custom gateway reports its status as {reported!r}, not 'ok'.",
                gateway_code=reported,
            )
        return GatewayMisconfigured(
            "The base URL answered /health without the contract's JSON "
            '{"status": "ok"}: check the base URL.'
        )
    if status == 429 or status >= 500:
        return GatewayUnavailable(
            f"The custom gateway answered with HTTP {status}.", gateway_code=code
        )
    if status in (404, 405):
        return GatewayMisconfigured(
            f"The custom gateway has no /health endpoint at this base URL (HTTP {status})."
        )
    return GatewayRejected(
        f"The custom gateway refused the health check (HTTP {status}).", gateway_code=code
    )
