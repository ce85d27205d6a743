"""Every query of the gateways table."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime

from sqlalchemy import Select, bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.eligibility import unfit
from paygate.gateways.models import Gateway
from paygate.kit.repository import TenantRepository
from paygate.kit.sql import HotStatement, attach, labelled, run

_LISTING = HotStatement(
    select(*labelled(Gateway))
    .where(Gateway.company_id == bindparam("company_id"), Gateway.archived_at.is_(None))
    .order_by(Gateway.priority, Gateway.created_at)
)

_CURRENT = HotStatement(
    select(*labelled(Gateway)).where(
        Gateway.company_id == bindparam("company_id"),
        Gateway.id == bindparam("gateway_id"),
        Gateway.archived_at.is_(None),
    )
)


class GatewayRepository(TenantRepository[Gateway]):
    model = Gateway
    what = "gateway"

    def scoped(self) -> Select[Gateway]:
        # Archived gateways are kept for history but are gone from every list and lookup.
        return super().scoped().where(Gateway.archived_at.is_(None))

    async def get_kept(self, gateway_id: str, *, for_update: bool = False) -> Gateway:
        """Archived ones too: a gateway kept for history keeps its versions readable."""
        return await self.get(gateway_id, for_update=for_update, among=super().scoped())

    async def eligible(self, currency: str, amount: int, method_type: str) -> Sequence[Gateway]:
        """Enabled gateways that take this currency, amount and method: the routing candidates,
        best first (priority, then the oldest). `eligibility.unfit` is the one rule."""
        return [g for g in await self.listing() if unfit(g, currency, amount, method_type) is None]

    async def current(self, gateway_id: str) -> Gateway | None:
        """One gateway as it is now (not archived): `find` for the payment path, which
        reads the next gateway's row again at each failover."""
        params = {"company_id": self.company_id, "gateway_id": gateway_id}
        rows = await run(self.session, _CURRENT, params)
        return attach(self.session, Gateway, rows[0]) if rows else None

    async def listing(self) -> Sequence[Gateway]:
        """The company's gateways, best first (every payment routes over this list)."""
        rows = await run(self.session, _LISTING, {"company_id": self.company_id})
        return [attach(self.session, Gateway, row) for row in rows]

    async def failing_tests(self) -> Sequence[Gateway]:
        """Gateways whose last connection test failed, most recent failure first."""
        statement = (
            self.scoped()
            .where(Gateway.last_test_ok.is_(False))
            .order_by(Gateway.last_test_at.desc())
        )
        return (await self.session.execute(statement)).scalars().all()


async def count_by_key_id(session: AsyncSession, company_id: str | None = None) -> dict[str, int]:
    """How many configurations each master key wraps (archived ones included), of one
    company or (None: the operator's view) of all."""
    statement = select(Gateway.key_id, func.count()).group_by(Gateway.key_id)
    if company_id is not None:
        statement = statement.where(Gateway.company_id == company_id)
    rows = await session.execute(statement)
    return {key_id: int(count) for key_id, count in rows.tuples()}


async def lock_batch_not_under(
    session: AsyncSession,
    key_id: str,
    size: int,
    *,
    company_id: str | None = None,
    exclude: Collection[str] = (),
) -> Sequence[Gateway]:
    """Up to `size` configurations wrapped by another key than `key_id`, row-locked, of one
    company or (None) of all, leaving out `exclude` (those that already failed).

    SKIP LOCKED lets rotation run beside live traffic (and beside another rotation).
    """
    statement = (
        select(Gateway)
        .where(Gateway.key_id != key_id)
        .order_by(Gateway.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    if company_id is not None:
        statement = statement.where(Gateway.company_id == company_id)
    if exclude:
        statement = statement.where(Gateway.id.not_in(list(exclude)))
    return (await session.execute(statement)).scalars().all()


async def lock_batch_with_expired_previous(
    session: AsyncSession, now: datetime, size: int, *, exclude: Collection[str] = ()
) -> Sequence[Gateway]:
    """Up to `size` configurations keeping a previous secret past its grace, row-locked."""
    statement = (
        select(Gateway)
        .where(Gateway.previous_credentials_expire_at <= now)
        .order_by(Gateway.id)
        .limit(size)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        statement = statement.where(Gateway.id.not_in(list(exclude)))
    return (await session.execute(statement)).scalars().all()
