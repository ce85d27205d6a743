"""Every query of received webhooks, their processing history and bulk replays.

Reads for the API and pages are tenant-scoped repositories. Three queries are not, and
say why: the receiving endpoint finds the gateway by the id in its URL (the gateway names
the tenant), and the job and the sweeper lock an event by id (they carry its company).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt, WebhookReplay


@dataclass(frozen=True)
class EventFilters:
    gateway_id: str | None = None
    event_type: str | None = None
    status: str | None = None
    received_from: datetime | None = None
    received_to: datetime | None = None


class WebhookEventRepository(TenantRepository[WebhookEvent]):
    model = WebhookEvent
    what = "webhook event"

    async def search(
        self, filters: EventFilters, params: PageParams
    ) -> tuple[Sequence[WebhookEvent], str | None]:
        statement = apply_filters(
            self.scoped(),
            [
                (filters.gateway_id, lambda v: WebhookEvent.gateway_id == v),
                (filters.event_type, lambda v: WebhookEvent.event_type == v),
                (filters.status, lambda v: WebhookEvent.status == v),
                (filters.received_from, lambda v: WebhookEvent.received_at >= v),
                (filters.received_to, lambda v: WebhookEvent.received_at < v),
            ],
        )
        return await self.page(statement, params)

    async def attempts(self, event_id: str) -> Sequence[WebhookEventAttempt]:
        statement = (
            select(WebhookEventAttempt)
            .where(
                WebhookEventAttempt.company_id == self.company_id,
                WebhookEventAttempt.event_id == event_id,
            )
            .order_by(WebhookEventAttempt.number, WebhookEventAttempt.id)
        )
        return (await self.session.execute(statement)).scalars().all()

    async def count_failed(
        self, received_from: datetime, received_to: datetime, gateway_id: str | None
    ) -> int:
        statement = select(func.count()).select_from(WebhookEvent)
        statement = statement.where(*_failed_in(self.company_id, received_from, received_to))
        if gateway_id:
            statement = statement.where(WebhookEvent.gateway_id == gateway_id)
        return int((await self.session.execute(statement)).scalar_one())

    async def failed_after(
        self,
        received_from: datetime,
        received_to: datetime,
        gateway_id: str | None,
        cursor: str | None,
        limit: int,
    ) -> list[str]:
        """Failed events in the range, oldest first, after `cursor` (an event id)."""
        statement = select(WebhookEvent.id).where(
            *_failed_in(self.company_id, received_from, received_to)
        )
        if gateway_id:
            statement = statement.where(WebhookEvent.gateway_id == gateway_id)
        if cursor:
            statement = statement.where(WebhookEvent.id > cursor)
        statement = statement.order_by(WebhookEvent.id).limit(limit)
        return list((await self.session.execute(statement)).scalars().all())

    async def types_seen(self) -> list[str]:
        """The event types this company received, for the page's filter."""
        statement = (
            select(WebhookEvent.event_type)
            .where(WebhookEvent.company_id == self.company_id, WebhookEvent.event_type.is_not(None))
            .group_by(WebhookEvent.event_type)
            .order_by(WebhookEvent.event_type)
            .limit(200)
        )
        return [t for t in (await self.session.execute(statement)).scalars().all() if t]


def _failed_in(company_id: str, received_from: datetime, received_to: datetime) -> list[Any]:
    return [
        WebhookEvent.company_id == company_id,
        WebhookEvent.status == "failed",
        WebhookEvent.received_at >= received_from,
        WebhookEvent.received_at < received_to,
    ]


class WebhookReplayRepository(TenantRepository[WebhookReplay]):
    model = WebhookReplay
    what = "bulk replay"

    async def latest(self) -> WebhookReplay | None:
        statement = self.scoped().order_by(WebhookReplay.started_at.desc()).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def running(self) -> WebhookReplay | None:
        statement = self.scoped().where(WebhookReplay.status == "running").with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()


# --- the unscoped three ---------------------------------------------------------------


async def gateway_for_webhook(session: AsyncSession, gateway_id: str) -> Gateway | None:
    """The gateway a webhook URL names, whatever its company: the URL is the tenant's."""
    return await session.get(Gateway, gateway_id)


async def insert_event(session: AsyncSession, values: Mapping[str, Any]) -> str | None:
    """Store an event; None when the gateway already has this verified provider event
    (a retry, or a duplicate racing this one): the unique index decides, never a read."""
    statement = (
        insert(WebhookEvent)
        .values(**values)
        .on_conflict_do_nothing(
            index_elements=["gateway_id", "provider_event_id"],
            index_where=text("verified"),
        )
        .returning(WebhookEvent.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """The event, row-locked for processing; None when another worker holds it."""
    statement = (
        select(WebhookEvent)
        .where(WebhookEvent.id == event_id)
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def due_event_ids(session: AsyncSession, now: datetime, limit: int) -> list[str]:
    """Pending events whose (next) attempt is due: their job was lost, or they wait for a
    retry. Oldest first; rows another worker is processing are skipped."""
    statement = (
        select(WebhookEvent.id)
        .where(
            WebhookEvent.next_attempt_at.is_not(None),
            WebhookEvent.next_attempt_at <= now,
            WebhookEvent.status == "pending",
        )
        .order_by(WebhookEvent.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    return list((await session.execute(statement)).scalars().all())
