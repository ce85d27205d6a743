"""What a gateway reports on its own (a webhook) beyond a payment's or refund's status.

- Finding the payment or refund a gateway's event is about, by the gateway's reference
  or by paygate's own id echoed back (metadata, reference_id, custom_id).
- A refund made at the gateway (its dashboard, a dispute tool) that paygate never asked
  for: written as a pending refund, then settled through the one settle path
  (`PaymentService.report_refund`), so it counts on the payment and invoice like any other.
- The `disputed` mark: a chargeback opened against a payment, and how it ended.

Status changes of payments and known refunds never happen here: the webhook processing
reports them through `PaymentService.report` / `report_refund`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import cast

import structlog
from sqlalchemy import (
    Column,
    ColumnElement,
    DateTime,
    String,
    Table,
    or_,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.adapters.base import GatewayRefundStatus, RefundResult
from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.kit.money import Money
from paygate.kit.signals import Signal
from paygate.payments.models import Payment, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.service import Caller, PaymentService
from paygate.payments.state import PaymentStatus
from paygate.security import audit
from paygate.security.crypto import Keyring
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

# The dispute columns (migration 0014) on the payments table. Declared here, beside the only
# code that writes them, until payments/models.py maps them on Payment (then delete this).
_payments = cast(Table, Payment.__table__)
for _column in (
    Column("disputed_at", DateTime(timezone=True), nullable=True),
    Column("dispute_status", String(20), nullable=True),
    Column("dispute_reference", String(200), nullable=True),
    Column("dispute_reason", String(100), nullable=True),
    Column("dispute_updated_at", DateTime(timezone=True), nullable=True),
):
    if _column.name not in _payments.c:
        _payments.append_column(_column)


class DisputeStatus(StrEnum):
    OPEN = "open"  # the payer's bank is disputing the payment; evidence may be due
    WON = "won"  # closed in the merchant's favour
    LOST = "lost"  # closed in the payer's favour: the money went back


FINAL_DISPUTE_STATUSES = frozenset({DisputeStatus.WON, DisputeStatus.LOST})


@dataclass(frozen=True)
class DisputeReport:
    reference: str  # the provider's dispute id
    status: DisputeStatus
    reason: str | None
    amount: int | None
    currency: str | None
    occurred_at: datetime  # the provider's time for this state of the dispute


@dataclass(frozen=True)
class DisputeMark:
    """What the payment API and the invoice page show of a payment's dispute."""

    disputed_at: datetime
    status: DisputeStatus
    reference: str | None
    reason: str | None


@dataclass(frozen=True)
class DisputeChange:
    """Sent (inside the transaction) when a payment's dispute opens or changes status."""

    company_id: str
    payment_id: str
    invoice_id: str
    gateway_id: str
    dispute_reference: str
    from_status: str | None
    to_status: str
    amount: int
    currency: str
    reason: str | None
    occurred_at: datetime


payment_disputed: Signal[DisputeChange] = Signal("payment_disputed")


class ReportDeferred(Exception):
    """Not applicable yet (e.g. a refund of a payment that has not succeeded here yet, or
    while paygate's own refund call is still in flight): ask again later."""


class ReportRefused(Exception):
    """The report contradicts what paygate holds (e.g. more refunded than was paid): a
    person must look; retrying changes nothing."""


# --- finding what an event is about --------------------------------------------------


async def find_payment(
    session: AsyncSession,
    company_id: str,
    gateway_id: str,
    references: Iterable[str],
    paygate_id: str | None,
) -> Payment | None:
    """The company's payment at this gateway known by one of the gateway's references, or
    by paygate's own id as the gateway echoes it."""
    return await PaymentRepository(session, company_id).by_reference(
        gateway_id, list(references), paygate_id
    )


async def find_refund(
    session: AsyncSession,
    company_id: str,
    payment_id: str,
    reference: str | None,
    paygate_id: str | None,
) -> Refund | None:
    """The payment's refund known by the gateway's reference or by paygate's refund id."""
    clauses: list[ColumnElement[bool]] = []
    if reference:
        clauses.append(Refund.gateway_reference == reference)
    if paygate_id:
        clauses.append(Refund.id == paygate_id)
    if not clauses:
        return None
    statement = select(Refund).where(
        Refund.company_id == company_id, Refund.payment_id == payment_id, or_(*clauses)
    )
    return (await session.execute(statement)).scalars().first()


# --- refunds made at the gateway ------------------------------------------------------


class GatewayReports:
    """Applies what a gateway reported about a company's payment (the caller's company)."""

    def __init__(
        self, database: Database, keyring: Keyring, settings: Settings, caller: Caller
    ) -> None:
        self.database = database
        self.caller = caller
        self.payments = PaymentService(database, keyring, settings, caller)

    async def report_unknown_refund(
        self, payment_id: str, result: RefundResult, *, cause: str
    ) -> Refund:
        """A refund the gateway made that paygate has no row for: write it as pending (its
        amount reserved), then settle it through the one settle path.

        Idempotent: the same gateway reference is written once per payment. While the
        payment has a refund of paygate's own whose gateway reference is not known yet,
        this may be that very refund: ReportDeferred, until its call settles.
        """
        refund_id = await self._pending_refund_for(payment_id, result, cause)
        return await self.payments.report_refund(refund_id, result, cause=cause)

    async def _pending_refund_for(self, payment_id: str, result: RefundResult, cause: str) -> str:
        async with self.database.transaction() as session:
            payment = await _lock_payment(session, self.caller.company_id, payment_id)
            existing = await find_refund(
                session, payment.company_id, payment.id, result.gateway_reference, None
            )
            if existing is not None:
                return existing.id
            if result.status is GatewayRefundStatus.FAILED:
                raise ReportRefused("The gateway reports a failed refund paygate never made.")
            if payment.status != PaymentStatus.SUCCEEDED:
                raise ReportDeferred(
                    f"Payment {payment.id} is {payment.status} here: a refund of it waits "
                    "until its success is known."
                )
            pending = (
                (
                    await session.execute(
                        select(Refund.amount, Refund.gateway_reference).where(
                            Refund.payment_id == payment.id, Refund.status == "pending"
                        )
                    )
                )
                .tuples()
                .all()
            )
            if any(reference is None for _, reference in pending):
                raise ReportDeferred(
                    f"A refund of payment {payment.id} is in flight: this may be it."
                )
            refundable = payment.amount - payment.amount_refunded - sum(a for a, _ in pending)
            if result.currency.upper() != payment.currency or result.amount > refundable:
                raise ReportRefused(
                    f"The gateway reports a refund of {result.amount} {result.currency.upper()} "
                    f"of payment {payment.id}, which has {refundable} {payment.currency} left "
                    "to refund: check it in the gateway's dashboard."
                )
            refund = Refund(
                id=new_id("re"),
                company_id=payment.company_id,
                payment_id=payment.id,
                status="pending",
                amount=result.amount,
                currency=payment.currency,
                reason="Refunded at the gateway",
                gateway_reference=result.gateway_reference,
            )
            session.add(refund)
            await session.flush()
            await audit.record(
                session,
                company_id=payment.company_id,
                actor=self.caller.actor,
                origin=self.caller.origin,
                action="refund.reported_by_gateway",
                object_type="payment",
                object_id=payment.id,
                detail=(
                    f"{Money(result.amount, payment.currency)} refunded at the gateway "
                    f"({result.gateway_reference}), recorded as {refund.id}: {cause}."
                ),
            )
            return refund.id

    # --- disputes ---------------------------------------------------------------------

    async def report_dispute(
        self, payment_id: str, report: DisputeReport, *, cause: str
    ) -> DisputeMark | None:
        """Mark the payment disputed, or move its dispute on; never back (an older event,
        or an open report after the dispute closed, changes nothing). Returns the mark."""
        async with self.database.transaction() as session:
            payment = await _lock_payment(session, self.caller.company_id, payment_id)
            row = (
                await session.execute(
                    select(
                        _payments.c.disputed_at,
                        _payments.c.dispute_status,
                        _payments.c.dispute_reference,
                        _payments.c.dispute_updated_at,
                    ).where(_payments.c.id == payment.id)
                )
            ).one()
            before = DisputeStatus(row.dispute_status) if row.dispute_status else None
            if not _moves_dispute(row, before, report):
                return await _mark(session, payment)
            now = utcnow()
            await session.execute(
                update(_payments)
                .where(_payments.c.id == payment.id)
                .values(
                    disputed_at=row.disputed_at or now,
                    dispute_status=report.status.value,
                    dispute_reference=report.reference[:200],
                    dispute_reason=(report.reason or None) and report.reason[:100],
                    dispute_updated_at=report.occurred_at,
                )
            )
            await audit.record(
                session,
                company_id=payment.company_id,
                actor=self.caller.actor,
                origin=self.caller.origin,
                action="payment.disputed" if before is None else "payment.dispute_updated",
                object_type="payment",
                object_id=payment.id,
                changes={
                    "dispute_status": {
                        "before": before.value if before else None,
                        "after": report.status.value,
                    }
                },
                detail=f"Dispute {report.reference} ({report.reason or 'no reason given'}): "
                f"{cause}.",
            )
            await payment_disputed.send(
                session,
                DisputeChange(
                    company_id=payment.company_id,
                    payment_id=payment.id,
                    invoice_id=payment.invoice_id,
                    gateway_id=payment.gateway_id,
                    dispute_reference=report.reference,
                    from_status=before.value if before else None,
                    to_status=report.status.value,
                    amount=report.amount if report.amount is not None else payment.amount,
                    currency=(report.currency or payment.currency).upper(),
                    reason=report.reason,
                    occurred_at=report.occurred_at,
                ),
            )
            logger.info(
                "payment_dispute_reported",
                payment_id=payment.id,
                dispute_reference=report.reference,
                from_status=before.value if before else None,
                to_status=report.status.value,
            )
            return await _mark(session, payment)


def _moves_dispute(row: object, before: DisputeStatus | None, report: DisputeReport) -> bool:
    if before is None:
        return True
    updated_at: datetime | None = getattr(row, "dispute_updated_at", None)
    if updated_at is not None and report.occurred_at < updated_at:
        return False  # older than what is shown: out of order
    if before in FINAL_DISPUTE_STATUSES and report.status is DisputeStatus.OPEN:
        return getattr(row, "dispute_reference", None) != report.reference  # a new dispute
    return before is not report.status or getattr(row, "dispute_reference", None) != (
        report.reference
    )


async def _lock_payment(session: AsyncSession, company_id: str, payment_id: str) -> Payment:
    statement = (
        select(Payment)
        .where(Payment.company_id == company_id, Payment.id == payment_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    payment = (await session.execute(statement)).scalar_one_or_none()
    if payment is None:
        raise LookupError(f"no payment {payment_id}")
    return payment


async def _mark(session: AsyncSession, payment: Payment) -> DisputeMark | None:
    return (await dispute_marks(session, payment.company_id, [payment.id])).get(payment.id)


async def dispute_marks(
    session: AsyncSession, company_id: str, payment_ids: Sequence[str]
) -> dict[str, DisputeMark]:
    """The dispute marks of the company's payments among these (the others have none)."""
    if not payment_ids:
        return {}
    rows = await session.execute(
        select(
            _payments.c.id,
            _payments.c.disputed_at,
            _payments.c.dispute_status,
            _payments.c.dispute_reference,
            _payments.c.dispute_reason,
        ).where(
            _payments.c.company_id == company_id,
            _payments.c.id.in_(list(payment_ids)),
            _payments.c.disputed_at.is_not(None),
        )
    )
    return {
        row.id: DisputeMark(
            disputed_at=row.disputed_at,
            status=DisputeStatus(row.dispute_status),
            reference=row.dispute_reference,
            reason=row.dispute_reason,
        )
        for row in rows
    }
