"""What a gateway's answer or error means for a payment: pure decisions, no database."""

from __future__ import annotations

from paygate.gateways.adapters.base import GatewayPaymentStatus, PaymentResult, RefundResult
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayUnavailable,
)
from paygate.payments.models import Payment
from paygate.payments.retry_queue import RetryScheduled
from paygate.payments.state import FailureKind, PaymentStatus


def status_after_answer(payment: Payment, result: PaymentResult) -> tuple[PaymentStatus, str]:
    """Where a gateway's answer takes a payment, filling in what the answer says."""
    payment.gateway_reference = result.gateway_reference or payment.gateway_reference
    # A definite answer replaces whatever an earlier unknown outcome said.
    payment.failure_code = payment.failure_message = payment.gateway_code = None
    if (result.amount, result.currency.upper()) != (payment.amount, payment.currency):
        payment.review_reason = (
            f"The gateway answered {result.amount} {result.currency.upper()} "
            f"for a payment of {payment.amount} {payment.currency}."
        )
        payment.failure_code = "amount_mismatch"
        payment.failure_message = payment.review_reason
        return PaymentStatus.REQUIRES_REVIEW, "amount or currency mismatch"
    if result.status is GatewayPaymentStatus.SUCCEEDED:
        payment.next_action = None
        return PaymentStatus.SUCCEEDED, "succeeded"
    if result.status is GatewayPaymentStatus.REQUIRES_ACTION:
        if result.next_action is not None:
            payment.next_action = {
                "type": result.next_action.type,
                "redirect_url": result.next_action.redirect_url,
                "client_secret": result.next_action.client_secret,
            }
        return PaymentStatus.REQUIRES_ACTION, "the customer must act"
    if result.status is GatewayPaymentStatus.PROCESSING:
        return PaymentStatus.PROCESSING, "the gateway is still processing"
    payment.next_action = None
    if result.status is GatewayPaymentStatus.CANCELED:
        payment.failure_code = "canceled"
        payment.failure_message = "The payment was canceled."
        return PaymentStatus.CANCELED, "canceled"
    decline = result.decline
    payment.failure_code = decline.code.value if decline else "card_declined"
    payment.failure_message = decline.message if decline else "The payment was declined."
    payment.gateway_code = decline.gateway_code if decline else result.raw_status
    return PaymentStatus.FAILED, f"failed ({payment.failure_code})"


def status_after_error(payment: Payment, error: GatewayError) -> tuple[PaymentStatus, str]:
    """Where a gateway's error takes a payment: unknown (sent, no answer) is never failed."""
    if isinstance(error, RetryScheduled):
        # Queued after a network error (payments/retry_queue.py): open, and says when.
        payment.failure_code = error.code
        payment.failure_message = error.message
        payment.gateway_code = error.gateway_code
        return PaymentStatus.PROCESSING, "queued to be tried again"
    if isinstance(error, GatewayDeclined):
        payment.failure_code = error.decline_code
        payment.failure_message = error.message
        payment.gateway_code = error.gateway_code
        payment.next_action = None
        return PaymentStatus.FAILED, f"declined ({error.decline_code})"
    if isinstance(error, GatewayUnavailable) and error.request_sent:
        # The gateway may have acted: unknown, to be resolved by asking it.
        payment.failure_code = "outcome_unknown"
        payment.failure_message = (
            f"{error.message} The outcome is unknown until the gateway is asked."
        )
        return PaymentStatus.PROCESSING, f"outcome unknown ({error.code})"
    if payment.status == PaymentStatus.REQUIRES_ACTION and isinstance(error, GatewayUnavailable):
        return PaymentStatus.REQUIRES_ACTION, f"gateway unreachable ({error.code})"
    code = {
        GatewayMisconfigured: "gateway_misconfigured",
        GatewayRejected: "invalid_request",
    }.get(type(error), "processing_error")
    payment.failure_code = code
    payment.failure_message = error.message
    payment.gateway_code = error.gateway_code
    payment.next_action = None
    return PaymentStatus.FAILED, f"failed ({code})"


def failure_kind(
    outcome: PaymentResult | RefundResult | GatewayError, failure_code: str | None
) -> str | None:
    """Whose side a failure is on; None when nothing failed."""
    if failure_code is None:
        return None
    if isinstance(outcome, GatewayDeclined) or (
        isinstance(outcome, PaymentResult)
        and outcome.status in (GatewayPaymentStatus.FAILED, GatewayPaymentStatus.CANCELED)
    ):
        return FailureKind.DECLINE.value
    return FailureKind.TECHNICAL.value
