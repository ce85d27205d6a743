"""The payment state machine: the only way a payment's status changes."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.kit.sql import transaction_memo
from paygate.payments.models import Payment, PaymentEvent


class PaymentStatus(StrEnum):
    PROCESSING = "processing"  # sent, or about to be; the outcome may be unknown
    REQUIRES_ACTION = "requires_action"  # the customer must act (redirect, 3-D Secure)
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"
    # The gateway's answer did not match what was asked (amount, currency): a person looks.
    REQUIRES_REVIEW = "requires_review"


TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    PaymentStatus.PROCESSING: frozenset(
        {
            PaymentStatus.REQUIRES_ACTION,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
            PaymentStatus.REQUIRES_REVIEW,
        }
    ),
    PaymentStatus.REQUIRES_ACTION: frozenset(
        {
            PaymentStatus.PROCESSING,
            PaymentStatus.SUCCEEDED,
            PaymentStatus.FAILED,
            PaymentStatus.CANCELED,
            PaymentStatus.REQUIRES_REVIEW,
        }
    ),
    PaymentStatus.REQUIRES_REVIEW: frozenset({PaymentStatus.SUCCEEDED, PaymentStatus.FAILED}),
    PaymentStatus.SUCCEEDED: frozenset(),
    PaymentStatus.FAILED: frozenset(),
    PaymentStatus.CANCELED: frozenset(),
}

OPEN_STATUSES = frozenset({PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION})
# What still holds part of an invoice's amount due: a payment under review may have been
# collected, so the invoice must not be paid again until a person decides.
RESERVING_STATUSES = OPEN_STATUSES | {PaymentStatus.REQUIRES_REVIEW}


class FailureKind(StrEnum):
    """Why an attempt or a refund did not succeed: the customer's side or the gateway's."""

    DECLINE = "decline"  # the card or account was refused: another gateway would refuse too
    TECHNICAL = "technical"  # timeout, 5xx, network, bad credentials, invalid request


class InvalidTransition(Exception):
    pass


def can_move(current: str, target: PaymentStatus) -> bool:
    return target == current or target in TRANSITIONS[PaymentStatus(current)]


async def move(session: AsyncSession, payment: Payment, target: PaymentStatus, cause: str) -> bool:
    """Move `payment` (locked by the caller) to `target`, recording why. False if unchanged."""
    if payment.status == target:
        return False
    if not can_move(payment.status, target):
        raise InvalidTransition(f"{payment.status} -> {target}")
    now = utcnow()
    event = PaymentEvent(
        id=new_id("pev"),
        company_id=payment.company_id,
        payment_id=payment.id,
        from_status=payment.status,
        to_status=target.value,
        cause=cause,
        occurred_at=now,
    )
    session.add(event)
    transaction_memo(session, "payment_events").setdefault(payment.id, []).append(event)
    payment.status = target.value
    payment.updated_at = now
    return True


def recorded_events(session: AsyncSession, payment_id: str) -> list[PaymentEvent]:
    """The events `move` recorded for the payment in the session's current transaction."""
    events: list[PaymentEvent] = transaction_memo(session, "payment_events").get(payment_id, [])
    return events
