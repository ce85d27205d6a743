"""Every query of the payments list, its CSV export and the overview: tenant-scoped reads.

The API (`GET /api/v1/payments`), the payments page and its CSV export use one filter,
`PaymentQuery`, so the three always select the same payments.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.invoices.models import Invoice
from paygate.kit.pagination import PageParams
from paygate.payments.models import Payment, PaymentEvent, Refund
from paygate.payments.state import PaymentStatus

EXPORT_BATCH = 500


@dataclass(frozen=True)
class PaymentQuery:
    """Which payments: every given filter must hold (amounts in minor units)."""

    invoice_id: str | None = None
    gateway_id: str | None = None
    status: PaymentStatus | None = None
    method: str | None = None  # payment_method_type: card, paypal, ...
    currency: str | None = None
    since: datetime | None = None  # created at or after
    until: datetime | None = None  # created before
    amount_min: int | None = None
    amount_max: int | None = None
    # A payment id, an invoice number or (part of) the customer's email.
    search: str | None = None


@dataclass(frozen=True)
class PaymentLine:
    """One payment as the list and the export show it: with its invoice and gateway."""

    payment: Payment
    invoice_number: str
    customer_email: str
    gateway_name: str


@dataclass(frozen=True)
class Collected:
    currency: str
    today: int
    last_30_days: int
    refunded_30_days: int


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _lines(rows: Iterable[Any]) -> list[PaymentLine]:
    return [PaymentLine(row[0], row[1], row[2], row[3]) for row in rows]


class PaymentListing:
    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    def _select(self, query: PaymentQuery) -> Select[Payment, str, str, str]:
        statement = (
            select(Payment, Invoice.number, Invoice.customer_email, Gateway.name)
            .join(Invoice, Invoice.id == Payment.invoice_id)
            .join(Gateway, Gateway.id == Payment.gateway_id)
            .where(Payment.company_id == self.company_id)
        )
        conditions: list[tuple[object | None, Callable[[Any], Any]]] = [
            (query.invoice_id, lambda v: Payment.invoice_id == v),
            (query.gateway_id, lambda v: Payment.gateway_id == v),
            (query.status, lambda v: Payment.status == v.value),
            (query.method, lambda v: Payment.payment_method_type == v),
            (query.currency, lambda v: Payment.currency == v),
            (query.since, lambda v: Payment.created_at >= v),
            (query.until, lambda v: Payment.created_at < v),
            (query.amount_min, lambda v: Payment.amount >= v),
            (query.amount_max, lambda v: Payment.amount <= v),
        ]
        for value, clause in conditions:
            if value is not None:
                statement = statement.where(clause(value))
        if query.search:
            term = query.search.strip()
            statement = statement.where(
                or_(
                    Payment.id == term,
                    func.lower(Invoice.number) == term.lower(),
                    Invoice.customer_email.ilike(_like(term), escape="\\"),
                )
            )
        return statement

    async def page(
        self, query: PaymentQuery, params: PageParams
    ) -> tuple[list[PaymentLine], str | None]:
        """Newest first; the cursor is the last payment id of this page."""
        statement = self._select(query)
        if params.cursor:
            statement = statement.where(Payment.id < params.cursor)
        statement = statement.order_by(Payment.id.desc()).limit(params.limit + 1)
        rows = _lines(await self.session.execute(statement))
        cursor = rows[params.limit - 1].payment.id if len(rows) > params.limit else None
        return rows[: params.limit], cursor

    async def stream(self, query: PaymentQuery) -> AsyncIterator[PaymentLine]:
        """Every selected payment, newest first, read in batches (for the CSV export)."""
        cursor: str | None = None
        while True:
            batch, cursor = await self.page(query, PageParams(limit=EXPORT_BATCH, cursor=cursor))
            for line in batch:
                yield line
            if cursor is None:
                return

    async def methods(self) -> list[str]:
        """The payment method types this company's payments used (the filter's choices)."""
        statement = (
            select(Payment.payment_method_type)
            .where(Payment.company_id == self.company_id)
            .distinct()
            .order_by(Payment.payment_method_type)
        )
        return list((await self.session.execute(statement)).scalars())

    async def currencies(self) -> list[str]:
        statement = (
            select(Payment.currency)
            .where(Payment.company_id == self.company_id)
            .distinct()
            .order_by(Payment.currency)
        )
        return list((await self.session.execute(statement)).scalars())

    # --- the overview ------------------------------------------------------------------

    async def collected(self, day_start: datetime, month_start: datetime) -> list[Collected]:
        """Per currency: what payments collected since `day_start` and since `month_start`
        (when they succeeded, not when they began), and what refunds gave back since then."""
        succeeded = (
            select(
                Payment.currency,
                func.sum(Payment.amount)
                .filter(PaymentEvent.occurred_at >= day_start)
                .label("today"),
                func.sum(Payment.amount).label("month"),
            )
            .join(PaymentEvent, PaymentEvent.payment_id == Payment.id)
            .where(
                Payment.company_id == self.company_id,
                PaymentEvent.company_id == self.company_id,
                PaymentEvent.to_status == PaymentStatus.SUCCEEDED.value,
                PaymentEvent.occurred_at >= month_start,
            )
            .group_by(Payment.currency)
        )
        refunded = (
            select(Refund.currency, func.sum(Refund.amount))
            .where(
                Refund.company_id == self.company_id,
                Refund.status == "succeeded",
                Refund.updated_at >= month_start,
            )
            .group_by(Refund.currency)
        )
        totals: dict[str, list[int]] = {}
        for currency, today, month in await self.session.execute(succeeded):
            totals[currency] = [int(today or 0), int(month or 0), 0]
        for currency, amount in await self.session.execute(refunded):
            totals.setdefault(currency, [0, 0, 0])[2] = int(amount or 0)
        return [Collected(c, *totals[c]) for c in sorted(totals)]

    async def needing_attention(
        self, stuck_before: datetime, limit: int = 10
    ) -> tuple[Sequence[PaymentLine], int]:
        """Payments in review, and payments still processing since before `stuck_before`
        (their outcome is unknown until paygate asks the gateway): some, and how many."""
        condition = or_(
            Payment.status == PaymentStatus.REQUIRES_REVIEW.value,
            (Payment.status == PaymentStatus.PROCESSING.value)
            & (Payment.updated_at < stuck_before),
        )
        statement = self._select(PaymentQuery()).where(condition)
        rows = await self.session.execute(statement.order_by(Payment.id.desc()).limit(limit))
        count = (
            await self.session.execute(
                select(func.count())
                .select_from(Payment)
                .where(Payment.company_id == self.company_id, condition)
            )
        ).scalar_one()
        return _lines(rows), int(count)
