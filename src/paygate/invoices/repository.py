"""Every query of invoices."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.invoices.models import Invoice
from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters


@dataclass(frozen=True)
class InvoiceFilters:
    status: str | None = None
    customer: str | None = None  # email, exact (case-insensitive)
    since: datetime | None = None
    until: datetime | None = None


class InvoiceRepository(TenantRepository[Invoice]):
    model = Invoice
    what = "invoice"

    async def search(
        self, filters: InvoiceFilters, params: PageParams
    ) -> tuple[Sequence[Invoice], str | None]:
        statement = apply_filters(
            self.scoped(),
            [
                (filters.status, lambda v: Invoice.status == v),
                (filters.customer, lambda v: Invoice.customer_email == v.lower()),
                (filters.since, lambda v: Invoice.created_at >= v),
                (filters.until, lambda v: Invoice.created_at < v),
            ],
        )
        return await self.page(statement, params)

    async def open_payment_count(self, invoice: Invoice) -> int:
        """Payments of the invoice still waiting for an outcome or a review."""
        from paygate.payments.models import Payment  # payments build on invoices, not back

        statement = select(func.count()).where(
            Payment.company_id == self.company_id,
            Payment.invoice_id == invoice.id,
            Payment.status.in_(["processing", "requires_action", "requires_review"]),
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def next_number(self) -> str:
        """The number the next invoice gets when none is given: INV- and the count plus one,
        or the first after it that no invoice took (a number typed by hand may have)."""
        start = await self.count() + 1
        candidates = [f"INV-{n:06d}" for n in range(start, start + 50)]
        taken = set(
            (
                await self.session.execute(
                    select(Invoice.number).where(
                        Invoice.company_id == self.company_id, Invoice.number.in_(candidates)
                    )
                )
            ).scalars()
        )
        return next((c for c in candidates if c not in taken), f"INV-{start + 50:06d}")

    async def count(self) -> int:
        statement = (
            select(func.count()).select_from(Invoice).where(Invoice.company_id == self.company_id)
        )
        return int((await self.session.execute(statement)).scalar_one())


async def invoice_by_pay_token(
    session: AsyncSession, token: str, *, for_update: bool = False
) -> Invoice | None:
    """The invoice a public payment link names: the token is the customer's only credential."""
    statement = select(Invoice).where(Invoice.pay_token == token)
    if for_update:
        statement = statement.with_for_update()
    return (await session.execute(statement)).scalar_one_or_none()
