"""PayPal's bodies in paygate's terms: orders, captures and refunds as results, issues as
declines or refusals, amounts as minor units, and the redacted summaries each call records.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from paygate.gateways.adapters.base import (
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    NextAction,
    PaymentResult,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
from paygate.kit.money import exponent

# PayPal takes these currencies without decimals (TWD has two in ISO 4217).
_NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})


# 422 issues that are the payer's funding failing, as paygate's decline codes.
_DECLINES: dict[str, tuple[DeclineCode, bool, str]] = {
    "INSTRUMENT_DECLINED": (
        DeclineCode.CARD_DECLINED,
        False,
        "PayPal declined the payment method. Please choose another way to pay.",
    ),
    "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING": (
        DeclineCode.CARD_DECLINED,
        False,
        "PayPal declined the payment method. Please choose another way to pay.",
    ),
    "CARD_EXPIRED": (DeclineCode.EXPIRED_CARD, True, "The card used in PayPal has expired."),
    "PAYER_CANNOT_PAY": (DeclineCode.CARD_DECLINED, True, "PayPal cannot take this payment."),
    "TRANSACTION_REFUSED": (DeclineCode.CARD_DECLINED, True, "PayPal refused the payment."),
    "PAYER_ACCOUNT_RESTRICTED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The payer's PayPal account is restricted.",
    ),
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The payer's PayPal account is locked or closed.",
    ),
    "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED": (
        DeclineCode.CARD_DECLINED,
        True,
        "Too many payment attempts were made for this order.",
    ),
    "COMPLIANCE_VIOLATION": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "PayPal refused the payment for compliance reasons.",
    ),
    "TRANSACTION_BLOCKED_BY_PAYEE": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "The payment was blocked by the merchant's risk settings.",
    ),
}


def _decline_for(body: Mapping[str, Any]) -> Decline | None:
    issue = _issue(body)
    found = _DECLINES.get(issue or "")
    if found is None:
        return None
    code, hard, message = found
    return Decline(code=code, message=message, hard=hard, gateway_code=issue)


def _issue(body: Mapping[str, Any]) -> str | None:
    details = body.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and isinstance(detail.get("issue"), str):
                return str(detail["issue"])
    return None


def _refusal(status: int, body: Mapping[str, Any], what: str) -> GatewayRejected:
    issue = _issue(body)
    name = _paypal_code(body)
    if status == 404:
        return GatewayRejected(f"PayPal does not know {what}.", gateway_code=name)
    said = f": {issue}" if issue else ""
    return GatewayRejected(
        f"PayPal refused {what} (HTTP {status}{said}).", gateway_code=issue or name
    )


def _purchase_unit(order: Mapping[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units")
    if isinstance(units, list) and units and isinstance(units[0], dict):
        return units[0]
    return {}


def _captures(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    payments = _purchase_unit(order).get("payments")
    captures = payments.get("captures") if isinstance(payments, dict) else None
    found: list[dict[str, Any]] = [c for c in captures or [] if isinstance(c, dict)]
    return found


_REFUNDABLE_CAPTURES = frozenset({"COMPLETED", "PARTIALLY_REFUNDED"})


def _refundable_capture(order: Mapping[str, Any]) -> dict[str, Any] | None:
    refundable = [
        c for c in _captures(order) if c.get("id") and c.get("status") in _REFUNDABLE_CAPTURES
    ]
    return refundable[-1] if refundable else None


def _last_capture(order: Mapping[str, Any]) -> dict[str, Any] | None:
    """The order's latest capture, whatever its state (a fully refunded one included)."""
    with_id = [c for c in _captures(order) if c.get("id")]
    return with_id[-1] if with_id else None


def _refunds(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    payments = _purchase_unit(order).get("payments")
    refunds = payments.get("refunds") if isinstance(payments, dict) else None
    found: list[dict[str, Any]] = [r for r in refunds or [] if isinstance(r, dict)]
    return found


def _link(order: Mapping[str, Any], *rels: str) -> str | None:
    links = order.get("links")
    for rel in rels:
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
                return str(link["href"])
    return None


def _order_result(order: Mapping[str, Any], customer_returned: bool = False) -> PaymentResult:
    """Map an order (and its latest capture) to the gateway-neutral result.

    `customer_returned`: the customer came back without approving (cancel_url), so an
    order still waiting for them is canceled rather than still requiring action.
    """
    order_id = str(order.get("id") or "")
    status = str(order.get("status") or "")
    captures = _captures(order)
    capture = captures[-1] if captures else None
    money = (capture or {}).get("amount") or _purchase_unit(order).get("amount")
    amount, currency = _from_money(money)
    raw = status
    next_action: NextAction | None = None
    decline: Decline | None = None
    if capture is not None:
        capture_status = str(capture.get("status") or "")
        raw = capture_status or status
        if capture_status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"):
            result_status = GatewayPaymentStatus.SUCCEEDED
        elif capture_status in ("DECLINED", "FAILED"):
            result_status = GatewayPaymentStatus.FAILED
            decline = Decline(
                code=DeclineCode.CARD_DECLINED,
                message="PayPal declined the payment. Please choose another way to pay.",
                hard=False,
                gateway_code=capture_status,
            )
        else:  # PENDING: PayPal holds the funds for review (status_details.reason)
            result_status = GatewayPaymentStatus.PROCESSING
    elif status in ("CREATED", "PAYER_ACTION_REQUIRED"):
        if customer_returned:
            result_status = GatewayPaymentStatus.CANCELED
            decline = Decline(
                code=DeclineCode.CUSTOMER_CANCELED,
                message="The payment was canceled at PayPal.",
                hard=False,
                gateway_code=status,
            )
        else:
            result_status = GatewayPaymentStatus.REQUIRES_ACTION
            url = _link(order, "payer-action", "approve")
            next_action = NextAction(type="redirect", redirect_url=url) if url else None
    elif status == "VOIDED":
        result_status = GatewayPaymentStatus.CANCELED
    elif status == "COMPLETED":
        # Completed without a capture in the body: treat as still settling, ask again.
        result_status = GatewayPaymentStatus.PROCESSING
    else:  # APPROVED (capture pending), SAVED
        result_status = GatewayPaymentStatus.PROCESSING
    return PaymentResult(
        gateway_reference=order_id,
        status=result_status,
        amount=amount,
        currency=currency,
        next_action=next_action,
        decline=decline,
        raw_status=raw,
    )


_REFUND_STATUSES = {
    "COMPLETED": GatewayRefundStatus.SUCCEEDED,
    "PENDING": GatewayRefundStatus.PENDING,
    "FAILED": GatewayRefundStatus.FAILED,
    "CANCELLED": GatewayRefundStatus.FAILED,
}


def _refund_result(refund: Mapping[str, Any]) -> RefundResult:
    amount, currency = _from_money(refund.get("amount"))
    raw = str(refund.get("status") or "")
    return RefundResult(
        gateway_reference=str(refund.get("id") or ""),
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _to_value(amount: int, currency: str) -> str:
    """Minor units as PayPal's decimal string (1050 USD -> "10.50", 1000 JPY -> "1000")."""
    value = Decimal(amount).scaleb(-exponent(currency))
    if currency in _NO_DECIMALS:
        if value != value.to_integral_value():
            raise GatewayRejected(
                f"PayPal takes {currency} amounts in whole units only.",
                gateway_code="DECIMALS_NOT_SUPPORTED",
            )
        value = value.quantize(Decimal(1))
    return f"{value:f}"


def _from_money(money: Any) -> tuple[int, str]:
    """PayPal's {currency_code, value} as (minor units, currency), exactly or not at all."""
    if not isinstance(money, dict):
        raise GatewayRejected("PayPal's answer did not say the amount.", gateway_code="NO_AMOUNT")
    currency = str(money.get("currency_code") or "")
    try:
        minor = Decimal(str(money.get("value"))).scaleb(exponent(currency))
    except (InvalidOperation, ValueError):
        minor = Decimal("NaN")
    if not currency or not minor.is_finite() or minor != minor.to_integral_value():
        raise GatewayRejected(
            "PayPal answered with an amount paygate cannot read.", gateway_code="BAD_AMOUNT"
        )
    return int(minor), currency


def _summarize(body: Mapping[str, Any]) -> dict[str, Any]:
    """The non-secret parts of a PayPal answer, for the gateway call log."""
    summary: dict[str, Any] = {}
    for key in ("id", "status", "intent", "name", "debug_id"):
        if isinstance(body.get(key), str):
            summary[key] = body[key]
    issue = _issue(body)
    if issue:
        summary["issue"] = issue
    if isinstance(body.get("amount"), dict):
        summary["amount"] = _money_summary(body["amount"])
    unit = _purchase_unit(body)
    if isinstance(unit.get("amount"), dict):
        summary["order_amount"] = _money_summary(unit["amount"])
    captures = _captures(body)
    if captures:
        summary["captures"] = [
            {
                "id": c.get("id"),
                "status": c.get("status"),
                "amount": _money_summary(c.get("amount")),
            }
            for c in captures
        ]
    return summary


def _money_summary(money: Any) -> dict[str, Any] | None:
    if not isinstance(money, dict):
        return None
    return {"value": money.get("value"), "currency_code": money.get("currency_code")}


def _paypal_code(body: Mapping[str, Any]) -> str | None:
    # OAuth errors use "error"; the REST APIs use "name" (e.g. INTERNAL_SERVICE_ERROR).
    for key in ("error", "name"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None
