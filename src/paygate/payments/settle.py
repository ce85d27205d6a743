"""The one settle path: every way paygate learns an outcome ends here.

The API call's own answer, the customer back from a redirect, `sync`, the sweeper, a
gateway's webhook and a reviewer's decision all call `settle_payment` (or, for a person's
decision, `decide`); refunds call `settle_refund`. Here, and only here, a payment's or a
refund's status changes: along the state machine, under the row lock the caller holds, with
the event recorded, the gateway calls stored, the invoice's totals and status moved (by the
one rule in `invoices.rules`) and `payment_settled` sent inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import GatewayRefundStatus, PaymentResult, RefundResult
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayError,
    GatewayRejected,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import GatewayCallRecord
from paygate.invoices.rules import follow_totals
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.kit.writes import write_together
from paygate.payments.decisions import failure_kind, status_after_answer, status_after_error
from paygate.payments.models import GatewayCall, Payment, PaymentAttempt, PaymentEvent, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.signals import PaymentChange, payment_settled
from paygate.payments.state import OPEN_STATUSES, RESERVING_STATUSES, FailureKind, PaymentStatus
from paygate.payments.state import move as move_status

logger = structlog.get_logger(__name__)

Outcome = PaymentResult | GatewayError


@dataclass(frozen=True)
class Settled:
    """What the settle transaction holds when it is about to commit (for `pay(after=...)`)."""

    session: AsyncSession
    payment: Payment  # row-locked, settled
    attempt: PaymentAttempt  # row-locked, settled
    # The payment was open when settling began: this request settled it, so it has no
    # refunds yet. False: sync or the sweeper settled it meanwhile.
    first: bool
    public_config: Mapping[str, object]  # the gateway's non-secret configuration
    # This request failed over: the payment has earlier attempts besides `attempt`.
    failed_over: bool = False
    # The event that opened the payment, when this request reserved it, and what its
    # failovers wrote (the attempts they closed, their events).
    opening_event: PaymentEvent | None = None
    closed_attempts: tuple[PaymentAttempt, ...] = ()
    failover_events: tuple[PaymentEvent, ...] = ()


async def settle_payment(
    session: AsyncSession,
    payment: Payment,
    attempt: PaymentAttempt,
    outcome: Outcome,
    calls: Sequence[GatewayCallRecord],
    cause: str,
) -> bool:
    """Apply a gateway's answer (or error) to a row-locked payment; True if it moved.

    A payment no longer open keeps its first answer: an answer arriving late, twice or out
    of order never moves it backwards.
    """
    store_calls(session, payment.company_id, payment.gateway_id, calls, payment_id=payment.id)
    if PaymentStatus(payment.status) not in OPEN_STATUSES:
        return False
    if isinstance(outcome, GatewayError):
        target, reason = status_after_error(payment, outcome)
    else:
        target, reason = status_after_answer(payment, outcome)
    attempt.gateway_reference = payment.gateway_reference
    attempt.error_code = payment.failure_code
    attempt.error_message = payment.failure_message
    attempt.gateway_code = payment.gateway_code
    attempt.failure_kind = failure_kind(outcome, payment.failure_code)
    if calls:
        attempt.latency_ms = round((attempt.latency_ms or 0) + sum(c.latency_ms for c in calls), 1)
    moved = await decide(session, payment, target, f"{cause}: {reason}", attempt=attempt)
    if not moved:
        # Asked and still undecided: the sweeper moves on to others before asking again.
        payment.updated_at = utcnow()
    _log_payment(payment, attempt, target, reason, calls)
    return moved


async def decide(
    session: AsyncSession,
    payment: Payment,
    target: PaymentStatus,
    cause: str,
    *,
    attempt: PaymentAttempt | None = None,
) -> bool:
    """The only writer of a payment's status: move it (locked by the caller) to `target`,
    record why, keep its attempt and its invoice in step, and announce it. False if unchanged.
    """
    before = payment.status
    if not await move_status(session, payment, target, cause):
        return False
    if attempt is not None:
        attempt.status = payment.status
        if target not in OPEN_STATUSES:
            attempt.finished_at = utcnow()
    with session.no_autoflush:
        invoice_paid = await _move_invoice(session, payment, PaymentStatus(before), target)
    # The calls, the event, the payment, its attempt and the invoice in one round trip.
    await write_together(session)
    if payment_settled.has_listeners:
        await payment_settled.send(
            session,
            PaymentChange(
                company_id=payment.company_id,
                kind="payment",
                payment_id=payment.id,
                refund_id=None,
                invoice_id=payment.invoice_id,
                gateway_id=payment.gateway_id,
                from_status=before,
                to_status=payment.status,
                amount=payment.amount,
                currency=payment.currency,
                failure_code=payment.failure_code,
                failure_kind=attempt.failure_kind if attempt is not None else None,
                invoice_paid=invoice_paid,
                occurred_at=payment.updated_at,
            ),
        )
    return True


async def _move_invoice(
    session: AsyncSession, payment: Payment, before: PaymentStatus, after: PaymentStatus
) -> bool:
    """Release what the payment reserved, count what it collected; True if now paid."""
    releases = before in RESERVING_STATUSES and after not in RESERVING_STATUSES
    if not releases and after is not PaymentStatus.SUCCEEDED:
        return False
    invoice = await PaymentRepository(session, payment.company_id).lock_invoice(payment.invoice_id)
    was_paid = invoice.status == InvoiceStatus.PAID
    if releases:
        invoice.amount_reserved = max(invoice.amount_reserved - payment.amount, 0)
    if after is PaymentStatus.SUCCEEDED:
        invoice.amount_paid += payment.amount
    follow_totals(invoice)
    return not was_paid and invoice.status == InvoiceStatus.PAID


def store_calls(
    session: AsyncSession,
    company_id: str,
    gateway_id: str,
    calls: Sequence[GatewayCallRecord],
    *,
    payment_id: str | None = None,
    refund_id: str | None = None,
) -> None:
    """Keep every gateway call (redacted by the adapter) beside what it was for."""
    session.add_all(
        GatewayCall(
            id=new_id("gcl"),
            company_id=company_id,
            gateway_id=gateway_id,
            payment_id=payment_id,
            refund_id=refund_id,
            operation=call.operation,
            outcome=call.outcome,
            http_status=call.http_status,
            latency_ms=call.latency_ms,
            request=call.request,
            response=call.response,
            error=call.error,
        )
        for call in calls
    )


def _log_payment(
    payment: Payment,
    attempt: PaymentAttempt,
    target: PaymentStatus,
    reason: str,
    calls: Sequence[GatewayCallRecord],
) -> None:
    context = {
        "payment_id": payment.id,
        "invoice_id": payment.invoice_id,
        "gateway_id": payment.gateway_id,
        "attempt_id": attempt.id,
        "status": payment.status,
        "reason": reason,
    }
    if target in (PaymentStatus.FAILED, PaymentStatus.REQUIRES_REVIEW):
        # A failed transaction is logged with its full context (never a secret or card).
        logger.warning(
            "payment_failed",
            **context,
            amount=payment.amount,
            currency=payment.currency,
            failure_code=payment.failure_code,
            failure_message=payment.failure_message,
            gateway_code=payment.gateway_code,
            gateway_reference=payment.gateway_reference,
            calls=[(c.operation, c.outcome, c.http_status, c.error) for c in calls],
        )
    else:
        logger.info("payment_settled", **context)


# --- refunds ---------------------------------------------------------------------------


async def settle_refund(
    session: AsyncSession,
    payment: Payment,
    refund: Refund,
    outcome: RefundResult | GatewayError,
    calls: Sequence[GatewayCallRecord],
    *,
    asked: bool = False,
    cause: str = "the gateway answered",
) -> bool:
    """Move a pending refund along with the gateway's answer: the refund call's own, or
    (`asked`) a later one from a sync, the sweeper or a webhook. The caller holds the
    payment's row lock, then the refund's. True if the refund moved.

    Only a pending refund moves, so a succeeded refund counts on the payment and the
    invoice exactly once, whoever settles it first. Unknown is never failed.
    """
    store_calls(
        session,
        payment.company_id,
        payment.gateway_id,
        calls,
        payment_id=payment.id,
        refund_id=refund.id,
    )
    if refund.status != "pending":
        return False  # settled meanwhile: the first answer stands
    refund.updated_at = utcnow()
    if isinstance(outcome, GatewayError):
        if not _refund_error_is_final(refund, outcome, asked=asked):
            refund.failure_message = (
                f"{outcome.message} The outcome is unknown; paygate will ask again."
            )
            _log_refund(payment, refund, cause, f"still unknown ({outcome.code})")
            return False
        refund.failure_message = outcome.message
        refund.failure_code = outcome.code
        refund.gateway_code = outcome.gateway_code
        refund.failure_kind = (
            FailureKind.DECLINE if isinstance(outcome, GatewayDeclined) else FailureKind.TECHNICAL
        ).value
        return await _finish_refund(session, payment, refund, "failed", cause, outcome.code)
    # A definite answer replaces whatever an earlier unknown outcome said.
    refund.failure_message = None
    refund.gateway_reference = outcome.gateway_reference or refund.gateway_reference
    if (outcome.amount, outcome.currency.upper()) != (refund.amount, refund.currency):
        refund.failure_code = "amount_mismatch"
        refund.failure_kind = FailureKind.TECHNICAL.value
        refund.failure_message = (
            f"The gateway answered {outcome.amount} {outcome.currency} for a refund of "
            f"{refund.amount} {refund.currency}: check it in the gateway's dashboard."
        )
        return await _finish_refund(
            session, payment, refund, "failed", cause, "amount or currency mismatch"
        )
    reason = outcome.raw_status or outcome.status.value
    if outcome.status is GatewayRefundStatus.SUCCEEDED:
        return await _finish_refund(session, payment, refund, "succeeded", cause, reason)
    if outcome.status is GatewayRefundStatus.FAILED:
        refund.failure_code = "refund_refused"
        refund.failure_kind = FailureKind.DECLINE.value
        refund.gateway_code = outcome.raw_status or None
        refund.failure_message = "The gateway refused the refund."
        return await _finish_refund(session, payment, refund, "failed", cause, reason)
    _log_refund(payment, refund, cause, reason)
    return False


async def _finish_refund(
    session: AsyncSession, payment: Payment, refund: Refund, status: str, cause: str, reason: str
) -> bool:
    refund.status = status
    if status == "succeeded":
        payment.amount_refunded += refund.amount
        payment.updated_at = utcnow()
        invoice = await PaymentRepository(session, payment.company_id).lock_invoice(
            payment.invoice_id
        )
        invoice.amount_refunded += refund.amount
        invoice.updated_at = utcnow()
    _log_refund(payment, refund, cause, f"{status} ({reason})" if status == "failed" else reason)
    if payment_settled.has_listeners:
        await payment_settled.send(
            session,
            PaymentChange(
                company_id=payment.company_id,
                kind="refund",
                payment_id=payment.id,
                refund_id=refund.id,
                invoice_id=payment.invoice_id,
                gateway_id=payment.gateway_id,
                from_status="pending",
                to_status=status,
                amount=refund.amount,
                currency=refund.currency,
                failure_code=refund.failure_code,
                failure_kind=refund.failure_kind,
                invoice_paid=False,
                occurred_at=refund.updated_at,
            ),
        )
    return True


def _refund_error_is_final(refund: Refund, error: GatewayError, *, asked: bool) -> bool:
    """Whether an error settles a pending refund as failed (else it stays pending)."""
    if not asked:
        # The refund call itself: only an answer that may have reached the gateway leaves
        # the outcome unknown.
        return not (isinstance(error, GatewayUnavailable) and error.request_sent)
    # Asking again: the gateway refused the refund re-issued with its key, so no refund was
    # ever made. Anything else (unreachable, bad credentials, a refund the gateway cannot
    # find) says nothing about what it did.
    return isinstance(error, GatewayRejected) and refund.gateway_reference is None


def _log_refund(payment: Payment, refund: Refund, cause: str, reason: str) -> None:
    context = {
        "refund_id": refund.id,
        "payment_id": payment.id,
        "invoice_id": payment.invoice_id,
        "gateway_id": payment.gateway_id,
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "reason": f"{cause}: {reason}",
    }
    if refund.status == "failed":
        logger.warning(
            "refund_failed",
            **context,
            gateway_reference=refund.gateway_reference,
            failure_message=refund.failure_message,
        )
    else:
        logger.info("refund_settled", **context)
