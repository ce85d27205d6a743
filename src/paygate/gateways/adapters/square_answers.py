"""Square's answers in paygate's terms: payments and refunds as results, payment error
codes as declines, API errors as the error taxonomy, and the redacted summaries.
"""

from __future__ import annotations

from typing import Any

from square.core.api_error import ApiError

from paygate.gateways.adapters.base import (
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import record_response


class _DeclinedPayment(GatewayDeclined):
    """A decline that still carries the FAILED payment (for fetch_payment)."""

    def __init__(self, result: PaymentResult) -> None:
        decline = result.decline
        assert decline is not None
        super().__init__(
            decline.message,
            decline_code=decline.code.value,
            hard=decline.hard,
            gateway_code=decline.gateway_code,
        )
        self.result = result


class _UnknownObject(GatewayRejected):
    """Square answered 404 NOT_FOUND for the object."""


def _hosted(request: PaymentRequest) -> bool:
    return request.flow is PaymentFlow.HOSTED or not request.payment_method


# Square's payment error codes (PAYMENT_METHOD_ERROR) as paygate's decline codes.
_DECLINES: dict[str, tuple[DeclineCode, bool, str]] = {
    "GENERIC_DECLINE": (DeclineCode.CARD_DECLINED, False, "The card was declined."),
    "CVV_FAILURE": (DeclineCode.INCORRECT_CVC, False, "The card's security code is incorrect."),
    "VERIFY_CVV_FAILURE": (
        DeclineCode.INCORRECT_CVC,
        False,
        "The card's security code is incorrect.",
    ),
    "ADDRESS_VERIFICATION_FAILURE": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card's postal code does not match.",
    ),
    "VERIFY_AVS_FAILURE": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card's postal code does not match.",
    ),
    "INVALID_EXPIRATION": (
        DeclineCode.EXPIRED_CARD,
        False,
        "The card's expiration date is invalid or past.",
    ),
    "BAD_EXPIRATION": (
        DeclineCode.EXPIRED_CARD,
        False,
        "The card's expiration date is missing or invalid.",
    ),
    "CARD_EXPIRED": (DeclineCode.EXPIRED_CARD, True, "The card has expired."),
    "INSUFFICIENT_FUNDS": (
        DeclineCode.INSUFFICIENT_FUNDS,
        False,
        "The card has insufficient funds.",
    ),
    "GIFT_CARD_AVAILABLE_AMOUNT": (
        DeclineCode.INSUFFICIENT_FUNDS,
        False,
        "The gift card's balance is too low.",
    ),
    "TRANSACTION_LIMIT": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card issuer refused this amount.",
    ),
    "CARD_DECLINED_VERIFICATION_REQUIRED": (
        DeclineCode.AUTHENTICATION_FAILED,
        False,
        "The card needs the cardholder's verification.",
    ),
    "CARD_DECLINED_CALL_ISSUER": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card was declined: the cardholder should call the issuer.",
    ),
    "INVALID_PIN": (DeclineCode.CARD_DECLINED, False, "The card's PIN is incorrect."),
    "ALLOWABLE_PIN_TRIES_EXCEEDED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card's PIN was entered wrong too many times.",
    ),
    "CARD_NOT_SUPPORTED": (DeclineCode.CARD_DECLINED, True, "This card is not supported."),
    "INVALID_CARD": (DeclineCode.CARD_DECLINED, True, "The card is not valid."),
    "INVALID_ACCOUNT": (DeclineCode.CARD_DECLINED, True, "The card account was not found."),
    "PAN_FAILURE": (DeclineCode.CARD_DECLINED, True, "The card number is not valid."),
    "VOICE_FAILURE": (DeclineCode.CARD_DECLINED, True, "The card issuer needs a voice call."),
    "CARDHOLDER_INSUFFICIENT_PERMISSIONS": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card cannot be used here.",
    ),
    "BLOCKED_BY_BLOCKLIST": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "The payment was blocked by the seller's risk rules.",
    ),
    "FRAUD_DETECTED": (DeclineCode.FRAUD_SUSPECTED, True, "The payment looked fraudulent."),
}

_PAYMENT_STATUSES = {
    "COMPLETED": GatewayPaymentStatus.SUCCEEDED,
    "APPROVED": GatewayPaymentStatus.PROCESSING,
    "PENDING": GatewayPaymentStatus.PROCESSING,
    "CANCELED": GatewayPaymentStatus.CANCELED,
    "FAILED": GatewayPaymentStatus.FAILED,
}

_REFUND_STATUSES = {
    "COMPLETED": GatewayRefundStatus.SUCCEEDED,
    "PENDING": GatewayRefundStatus.PENDING,
    "REJECTED": GatewayRefundStatus.FAILED,
    "FAILED": GatewayRefundStatus.FAILED,
}


def _decline_for(code: str | None) -> Decline | None:
    found = _DECLINES.get(code or "")
    if found is None:
        return None
    decline_code, hard, message = found
    return Decline(code=decline_code, message=message, hard=hard, gateway_code=code)


def _error_codes(exc: ApiError) -> list[tuple[str | None, str | None]]:
    """(category, code) of each error in Square's body."""
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    found: list[tuple[str | None, str | None]] = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            category, code = error.get("category"), error.get("code")
            found.append(
                (
                    category if isinstance(category, str) else None,
                    code if isinstance(code, str) else None,
                )
            )
    return found


def _decline_from_errors(exc: ApiError) -> Decline | None:
    errors = _error_codes(exc)
    for _category, code in errors:
        if (decline := _decline_for(code)) is not None:
            return decline
    for category, code in errors:
        if category == "PAYMENT_METHOD_ERROR":
            return Decline(
                code=DeclineCode.CARD_DECLINED,
                message="The card was declined.",
                hard=False,
                gateway_code=code,
            )
    return None


def _failed_payment(exc: ApiError) -> Any:
    """The FAILED payment Square puts beside the errors of a declined CreatePayment."""
    from square.types.payment import Payment

    body = exc.body
    payment = body.get("payment") if isinstance(body, dict) else None
    if not isinstance(payment, dict):
        return None
    try:
        return Payment.model_validate(payment)
    except ValueError:
        return None


def _money(money: Any) -> tuple[int, str]:
    amount = getattr(money, "amount", None)
    currency = getattr(money, "currency", None)
    if not isinstance(amount, int) or not isinstance(currency, str):
        raise GatewayRejected("Square's answer did not say the amount.", gateway_code="NO_AMOUNT")
    return amount, currency


def _payment_result(payment: Any) -> PaymentResult:
    raw = str(payment.status or "")
    amount, currency = _money(payment.total_money or payment.amount_money)
    status = _PAYMENT_STATUSES.get(raw, GatewayPaymentStatus.PROCESSING)
    decline: Decline | None = None
    if status is GatewayPaymentStatus.FAILED:
        errors = getattr(payment.card_details, "errors", None) or []
        code = next((e.code for e in errors if getattr(e, "code", None)), None)
        decline = _decline_for(code) or Decline(
            code=DeclineCode.CARD_DECLINED,
            message="The card was declined.",
            hard=False,
            gateway_code=code or "FAILED",
        )
    return PaymentResult(
        gateway_reference=str(payment.id or ""),
        status=status,
        amount=amount,
        currency=currency,
        decline=decline,
        raw_status=raw,
    )


def _refund_answer(refund: Any) -> RefundResult:
    """A PaymentRefund as the result (inside `send`: records the answer, redacted)."""
    amount, currency = _money(refund.amount_money)
    raw = str(refund.status or "")
    record_response(
        200,
        {
            "refund_id": refund.id,
            "payment_id": refund.payment_id,
            "status": raw,
            "amount": amount,
            "currency": currency,
        },
    )
    return RefundResult(
        gateway_reference=str(refund.id or ""),
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _payment_summary(payment: Any) -> dict[str, Any]:
    money = payment.total_money or payment.amount_money
    card = payment.card_details
    return {
        "payment_id": payment.id,
        "status": payment.status,
        "amount": getattr(money, "amount", None),
        "currency": getattr(money, "currency", None),
        "order_id": payment.order_id,
        "card_status": getattr(card, "status", None),
        "card_brand": getattr(getattr(card, "card", None), "card_brand", None),
    }


def _error_summary(exc: ApiError) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "errors": [{"category": c, "code": k} for c, k in _error_codes(exc)],
    }
    payment = exc.body.get("payment") if isinstance(exc.body, dict) else None
    if isinstance(payment, dict):
        summary["payment_id"] = payment.get("id")
        summary["status"] = payment.get("status")
    return summary


def _describe(location: Any) -> str:
    name = getattr(location, "name", None)
    return f"{location.id} ({name})" if name else str(location.id)


def _error_code(exc: ApiError) -> str | None:
    # Square's error body: {"errors": [{"category", "code", "detail", "field"}]}.
    body = exc.body
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
    return None


def _map_api_error(
    exc: ApiError,
    *,
    permission: tuple[str, str] = ("read locations", "MERCHANT_PROFILE_READ"),
) -> GatewayError:
    status = exc.status_code or 0
    code = _error_code(exc)
    if status == 401:
        return GatewayMisconfigured("Square rejected the access token.", gateway_code=code)
    if status == 403:
        return GatewayMisconfigured(
            f"Square refused access: the access token lacks the permission to {permission[0]} "
            f"({permission[1]}).",
            gateway_code=code,
        )
    if code == "CARD_PROCESSING_NOT_ENABLED":
        return GatewayMisconfigured(
            "The Square location is not enabled for card processing.", gateway_code=code
        )
    if status == 429 or status >= 500:
        # Square does not act on a rate-limited request.
        return GatewayUnavailable(
            f"Square answered with HTTP {status}.", gateway_code=code, refused=status == 429
        )
    if status == 404 or code is None:
        # No Square error body: something else answered at the configured base URL.
        return GatewayMisconfigured(
            f"The Square API base URL did not answer like Square (HTTP {status}).",
            gateway_code=code,
        )
    return GatewayRejected(f"Square refused the request (HTTP {status}).", gateway_code=code)
