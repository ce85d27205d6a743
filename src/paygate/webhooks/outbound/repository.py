"""Every query of outbound webhooks: tenant-scoped, except the sweepers' (which only
collect ids of rows that are due, across companies)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import bindparam, delete, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.kit.sql import HotStatement, attach, labelled, run
from paygate.webhooks.outbound.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookMessage,
)

_ENABLED = HotStatement(
    select(*labelled(WebhookEndpoint))
    .where(
        WebhookEndpoint.company_id == bindparam("company_id"),
        WebhookEndpoint.enabled.is_(True),
    )
    .order_by(WebhookEndpoint.id)
)


class EndpointRepository(TenantRepository[WebhookEndpoint]):
    model = WebhookEndpoint
    what = "webhook endpoint"

    async def listing(self) -> Sequence[WebhookEndpoint]:
        statement = self.scoped().order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        return (await self.session.execute(statement)).scalars().all()

    async def enabled(self) -> Sequence[WebhookEndpoint]:
        """The enabled endpoints, whatever events they want (`wants` picks among them): read
        on every payment's settle."""
        rows = await run(
            self.session, _ENABLED, {"company_id": self.company_id}, sees_pending=False
        )
        return [attach(self.session, WebhookEndpoint, row) for row in rows]

    async def mark_failing(self, endpoint_id: str, now: datetime) -> None:
        """Remember when the failures began (only the first failure after a success writes)."""
        await self.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.company_id == self.company_id,
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.failing_since.is_(None),
            )
            .values(failing_since=now)
        )

    async def mark_healthy(self, endpoint_id: str) -> None:
        await self.session.execute(
            update(WebhookEndpoint)
            .where(
                WebhookEndpoint.company_id == self.company_id,
                WebhookEndpoint.id == endpoint_id,
                WebhookEndpoint.failing_since.is_not(None),
            )
            .values(failing_since=None)
        )


class DeliveryRepository(TenantRepository[WebhookDelivery]):
    model = WebhookDelivery
    what = "webhook delivery"

    async def of_endpoint(
        self,
        endpoint_id: str,
        params: PageParams,
        *,
        status: str | None = None,
        event_type: str | None = None,
    ) -> tuple[Sequence[WebhookDelivery], str | None]:
        statement = apply_filters(
            self.scoped().where(WebhookDelivery.endpoint_id == endpoint_id),
            [
                (status, lambda v: WebhookDelivery.status == v),
                (event_type, lambda v: WebhookDelivery.event_type == v),
            ],
        )
        return await self.page(statement, params)

    async def of_message(self, message_id: str) -> Sequence[WebhookDelivery]:
        statement = self.scoped().where(WebhookDelivery.message_id == message_id)
        return (await self.session.execute(statement.order_by(WebhookDelivery.id))).scalars().all()

    async def message(self, message_id: str) -> WebhookMessage:
        statement = select(WebhookMessage).where(
            WebhookMessage.company_id == self.company_id, WebhookMessage.id == message_id
        )
        return (await self.session.execute(statement)).scalar_one()

    async def attempts(self, delivery_id: str) -> Sequence[WebhookAttempt]:
        statement = (
            select(WebhookAttempt)
            .where(
                WebhookAttempt.company_id == self.company_id,
                WebhookAttempt.delivery_id == delivery_id,
            )
            .order_by(WebhookAttempt.attempt_number, WebhookAttempt.id)
        )
        return (await self.session.execute(statement)).scalars().all()


# --- the delivery job and the sweepers: rows found by id or by time, across companies ---


async def claim_delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """The delivery, row-locked; None when another worker holds it (it is being attempted)."""
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_delivery(session: AsyncSession, delivery_id: str) -> WebhookDelivery | None:
    """The delivery, row-locked, waiting for another holder (to record an attempt)."""
    statement = (
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def endpoint_of(
    session: AsyncSession, delivery: WebhookDelivery, *, for_update: bool = False
) -> WebhookEndpoint | None:
    return await EndpointRepository(session, delivery.company_id).find(
        delivery.endpoint_id, for_update=for_update
    )


async def overdue_deliveries(session: AsyncSession, before: datetime, limit: int) -> Sequence[str]:
    """Pending deliveries whose attempt was due before `before`: no job took them."""
    statement = (
        select(WebhookDelivery.id)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at < before)
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


async def endpoints_with_expired_previous(
    session: AsyncSession, now: datetime, limit: int
) -> Sequence[WebhookEndpoint]:
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.previous_secret_expires_at <= now)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return (await session.execute(statement)).scalars().all()


async def purge_finished(session: AsyncSession, before: datetime) -> int:
    """Delete deliveries (with their attempts) that ended before `before`, then messages no
    delivery refers to any more; returns how many deliveries went."""
    result = await session.execute(
        delete(WebhookDelivery).where(
            WebhookDelivery.status != "pending", WebhookDelivery.completed_at < before
        )
    )
    await session.execute(
        delete(WebhookMessage).where(
            WebhookMessage.created_at < before,
            ~select(WebhookDelivery.id)
            .where(WebhookDelivery.message_id == WebhookMessage.id)
            .exists(),
        )
    )
    return int(getattr(result, "rowcount", 0) or 0)


async def attempts_of(
    session: AsyncSession, company_id: str, delivery_ids: Sequence[str]
) -> dict[str, list[WebhookAttempt]]:
    """The attempts of these deliveries (one query for a page of the delivery log)."""
    found: dict[str, list[WebhookAttempt]] = {delivery_id: [] for delivery_id in delivery_ids}
    if not delivery_ids:
        return found
    statement = (
        select(WebhookAttempt)
        .where(
            WebhookAttempt.company_id == company_id,
            WebhookAttempt.delivery_id.in_(list(delivery_ids)),
        )
        .order_by(WebhookAttempt.attempt_number, WebhookAttempt.id)
    )
    for attempt in (await session.execute(statement)).scalars():
        found[attempt.delivery_id].append(attempt)
    return found


async def bodies_of(
    session: AsyncSession, company_id: str, message_ids: Sequence[str]
) -> dict[str, str]:
    """The bodies of these messages, by message id."""
    if not message_ids:
        return {}
    statement = select(WebhookMessage.id, WebhookMessage.body).where(
        WebhookMessage.company_id == company_id, WebhookMessage.id.in_(list(message_ids))
    )
    return {row[0]: row[1] for row in (await session.execute(statement)).tuples()}


async def endpoint_count_by_key_id(session: AsyncSession) -> dict[str, int]:
    """How many endpoint secrets each master key wraps (the operator's view)."""
    rows = await session.execute(
        select(WebhookEndpoint.key_id, func.count()).group_by(WebhookEndpoint.key_id)
    )
    return {key_id: int(count) for key_id, count in rows.tuples()}


async def endpoints_not_under(
    session: AsyncSession, key_id: str, limit: int, exclude: Sequence[str] = ()
) -> Sequence[WebhookEndpoint]:
    """Endpoints whose data key another master key than `key_id` wraps, row-locked."""
    statement = (
        select(WebhookEndpoint)
        .where(WebhookEndpoint.key_id != key_id)
        .order_by(WebhookEndpoint.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if exclude:
        statement = statement.where(WebhookEndpoint.id.not_in(list(exclude)))
    return (await session.execute(statement)).scalars().all()
