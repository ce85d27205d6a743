"""Every query of received webhooks, their processing history and bulk replays.

Reads for the API and pages are tenant-scoped repositories. The others are not, and say
why: the receiving endpoint finds the gateway by the id in its URL (the gateway names the
tenant) and stores under it, and the job and the sweeper lock an event by id (they carry
its company).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import LargeBinary, String, bindparam, func, literal_column, select, text
from sqlalchemy.dialects.postgresql import JSONB, insert
from sqlalchemy.dialects.postgresql.psycopg import dialect as psycopg_dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.types import TypeEngine

from paygate.gateways.models import Gateway
from paygate.kit.deferral import CoalescedJob, coalesced_deferral_sql
from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.kit.sql import HotStatement, attach, labelled, run
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt, WebhookReplay

_DIALECT = psycopg_dialect()  # type: ignore[no-untyped-call]


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


# `xmin` names the transaction that wrote the row's current version: any change to the row
# (its secrets, its settings) gives it another, so it serves as the row's version.
_GATEWAY = HotStatement(
    select(*labelled(Gateway), literal_column("gateways.xmin::text").label("row_version")).where(
        Gateway.id == bindparam("gateway_id")
    )
)


@dataclass(frozen=True)
class GatewayAsRead:
    gateway: Gateway
    version: str  # the row's version when it was read (`store_verified` checks it)


async def gateway_for_webhook(session: AsyncSession, gateway_id: str) -> GatewayAsRead | None:
    """The gateway a webhook URL names, whatever its company (the URL is the tenant's),
    with its row's version."""
    rows = await run(session, _GATEWAY, {"gateway_id": gateway_id})
    if not rows:
        return None
    return GatewayAsRead(attach(session, Gateway, rows[0]), rows[0].row_version)


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


@dataclass(frozen=True)
class Stored:
    event_id: str | None  # None: a duplicate whose first copy another request is committing
    duplicate: bool


STORED_COLUMNS = (
    "id",
    "company_id",
    "gateway_id",
    "provider",
    "provider_event_id",
    "event_type",
    "occurred_at",
    "received_at",
    "body",
    "headers",
    "verified",
    "verification",
    "status",
    "attempts",
    "next_attempt_at",
)


@lru_cache(maxsize=1)
def _store_verified_sql(wake: str) -> HotStatement:
    """Insert the event unless the gateway has it (the unique index decides) or the
    gateway's row is no longer the version the event was verified with, wake the
    processing job only if it was inserted, and otherwise read the stored copy's id: one
    statement."""
    table = WebhookEvent.__table__
    columns = ", ".join(STORED_COLUMNS)
    # Typed: in a SELECT list (not VALUES) PostgreSQL takes an untyped NULL for text.
    # Strings as text, so that a value too long for its column fails as in VALUES.
    values = ", ".join(
        f"CAST(:{name} AS {_cast_type(table.c[name].type)})" for name in STORED_COLUMNS
    )
    return HotStatement(
        text(
            "WITH current_gateway AS (SELECT 1 FROM gateways"  # noqa: S608 (constants only)
            " WHERE id = :gateway_id AND xmin = CAST(:gateway_version AS xid)),"
            f" stored AS (INSERT INTO webhook_events ({columns}) SELECT {values}"
            " WHERE EXISTS (SELECT 1 FROM current_gateway)"
            " ON CONFLICT (gateway_id, provider_event_id) WHERE verified DO NOTHING"
            " RETURNING id),"
            f" {wake}"
            " SELECT EXISTS (SELECT 1 FROM current_gateway) AS gateway_current,"
            " (SELECT id FROM stored) AS stored_id,"
            # The statement's snapshot: a copy committed before it began (the usual retry).
            " (SELECT e.id FROM webhook_events e WHERE e.gateway_id = :gateway_id"
            " AND e.provider_event_id = :provider_event_id AND e.verified"
            " AND NOT EXISTS (SELECT 1 FROM stored)) AS existing_id"
        ).bindparams(bindparam("body", type_=LargeBinary), bindparam("headers", type_=JSONB))
    )


def _cast_type(column_type: TypeEngine[Any]) -> str:
    if isinstance(column_type, String):
        return "text"
    return column_type.compile(dialect=_DIALECT)


async def store_verified(
    session: AsyncSession,
    values: Mapping[str, Any],
    gateway_version: str,
    job: CoalescedJob,
) -> Stored | None:
    """Store a verified event and wake `job` (unless one already waits) in one statement
    (atomic on its own: `session` may be an autocommit one), or find the copy the gateway
    already has. None: the gateway's row is no longer `gateway_version` (its secrets may
    have changed): nothing was stored; verify again with the gateway as it is now.

    A copy another request committed while this statement waited on the unique index is
    outside the statement's snapshot: it is read again, after the statement.
    """
    wake, job_params = coalesced_deferral_sql(job, source="stored")
    params = {**values, **job_params, "gateway_version": gateway_version}
    (row,) = await run(session, _store_verified_sql(wake), params)
    if not row.gateway_current:
        return None
    if row.stored_id is not None:
        return Stored(row.stored_id, duplicate=False)
    existing = row.existing_id or await _verified_copy(
        session, values["gateway_id"], values["provider_event_id"]
    )
    return Stored(existing, duplicate=True)


async def _verified_copy(
    session: AsyncSession, gateway_id: str, provider_event_id: str
) -> str | None:
    statement = select(WebhookEvent.id).where(
        WebhookEvent.gateway_id == gateway_id,
        WebhookEvent.provider_event_id == provider_event_id,
        WebhookEvent.verified,
    )
    return (await session.execute(statement)).scalar_one_or_none()


_LOCK_EVENT = HotStatement(
    select(*labelled(WebhookEvent))
    .where(WebhookEvent.id == bindparam("event_id"))
    .with_for_update(skip_locked=True)
)


async def lock_event(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """The event, row-locked for processing (read fresh); None when another worker holds it."""
    rows = await run(session, _LOCK_EVENT, {"event_id": event_id})
    return attach(session, WebhookEvent, rows[0]) if rows else None


# Received and never attempted, oldest first (index ix_webhook_events_received).
_CLAIM_RECEIVED = HotStatement(
    select(*labelled(WebhookEvent))
    .where(WebhookEvent.status == "pending", WebhookEvent.attempts == 0, WebhookEvent.verified)
    .order_by(WebhookEvent.received_at)
    .limit(1)
    .with_for_update(skip_locked=True)
)


async def claim_received(session: AsyncSession) -> WebhookEvent | None:
    """The oldest received event no run has attempted yet, row-locked for processing;
    None when there is none (or every one is being processed)."""
    rows = await run(session, _CLAIM_RECEIVED, {})
    return attach(session, WebhookEvent, rows[0]) if rows else None


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
