"""The queries monitoring's jobs run across every company: the schedule and its claims,
passive health, the alert outbox and the rollups. (Tenant-facing reads: repository.py.)"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, func, or_, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.repository import UserRepository
from paygate.gateways.models import Gateway
from paygate.monitoring.models import Alert, AlertRecipient, GatewayMonitor, Incident
from paygate.payments.models import GatewayCall, PaymentAttempt

# Live call outcomes that are the gateway's fault (call_gateway and the adapters name them):
# a timeout, no connection, a 5xx. A decline, a refusal as invalid or bad credentials are not.
TECHNICAL_CALL_OUTCOMES = ("timeout", "unreachable", "unavailable", "gateway_error")
# Technical attempt failures that say nothing about the gateway's health.
NOT_THE_GATEWAYS_FAULT = ("gateway_misconfigured", "invalid_request", "amount_mismatch")


def technical_call() -> ColumnElement[bool]:
    return or_(GatewayCall.outcome.in_(TECHNICAL_CALL_OUTCOMES), GatewayCall.http_status >= 500)


def technical_attempt() -> ColumnElement[bool]:
    return and_(
        PaymentAttempt.failure_kind == "technical",
        or_(
            PaymentAttempt.error_code.is_(None),
            PaymentAttempt.error_code.not_in(NOT_THE_GATEWAYS_FAULT),
        ),
    )


# --- the schedule -----------------------------------------------------------------------

# A new monitor's first slot: a stable offset inside its interval (a hash of the gateway id),
# so thousands of gateways added at once are spread over the interval, not checked together.
_ENSURE_MONITORS = text(
    """
    INSERT INTO gateway_monitors (
        gateway_id, company_id, interval_minutes, failure_threshold, status, status_since,
        check_state, consecutive_failures, passive_degraded, next_check_at, created_at,
        updated_at)
    SELECT g.id, g.company_id, :interval, :threshold,
           CASE WHEN g.enabled THEN 'unknown' ELSE 'paused' END, :now, 'unknown', 0, false,
           :now + make_interval(
               secs => mod(hashtext(g.id)::bigint + 2147483648, :interval * 60)),
           :now, :now
    FROM gateways g
    WHERE g.archived_at IS NULL
      AND NOT EXISTS (SELECT 1 FROM gateway_monitors m WHERE m.gateway_id = g.id)
    ON CONFLICT (gateway_id) DO NOTHING
    """
)


async def ensure_monitors(
    session: AsyncSession, now: datetime, interval: int, threshold: int
) -> int:
    """Give every gateway without a monitor one; returns how many were added."""
    result = await session.execute(
        _ENSURE_MONITORS, {"now": now, "interval": interval, "threshold": threshold}
    )
    return int(getattr(result, "rowcount", 0) or 0)


def _gateway_off() -> ColumnElement[bool]:
    return or_(Gateway.enabled.is_(False), Gateway.archived_at.is_not(None))


async def monitors_to_pause(session: AsyncSession) -> Sequence[str]:
    """Monitors of gateways disabled or archived since, not yet paused."""
    statement = (
        select(GatewayMonitor.gateway_id)
        .join(Gateway, Gateway.id == GatewayMonitor.gateway_id)
        .where(_gateway_off(), GatewayMonitor.status != "paused")
    )
    return (await session.execute(statement)).scalars().all()


async def monitors_to_resume(session: AsyncSession) -> Sequence[str]:
    """Paused monitors whose gateway is enabled again."""
    statement = (
        select(GatewayMonitor.gateway_id)
        .join(Gateway, Gateway.id == GatewayMonitor.gateway_id)
        .where(~_gateway_off(), GatewayMonitor.status == "paused")
    )
    return (await session.execute(statement)).scalars().all()


async def claim_due(
    session: AsyncSession, now: datetime, lease_end: datetime, token: str, limit: int
) -> Sequence[str]:
    """Claim up to `limit` due checks (oldest slot first) for this round; their ids.

    SKIP LOCKED plus the lease make claims disjoint however many workers run: a row another
    round is claiming is skipped, one it holds is not due until its lease runs out.
    """
    due = (
        select(GatewayMonitor.gateway_id)
        .join(Gateway, Gateway.id == GatewayMonitor.gateway_id)
        .where(
            GatewayMonitor.next_check_at <= now,
            or_(GatewayMonitor.claimed_until.is_(None), GatewayMonitor.claimed_until < now),
            Gateway.enabled.is_(True),
            Gateway.archived_at.is_(None),
        )
        .order_by(GatewayMonitor.next_check_at)
        .limit(limit)
        .with_for_update(of=GatewayMonitor, skip_locked=True)
        .cte("due")
    )
    statement = (
        update(GatewayMonitor)
        .where(GatewayMonitor.gateway_id.in_(select(due.c.gateway_id)))
        .values(claimed_until=lease_end, claim_token=token)
        .returning(GatewayMonitor.gateway_id)
    )
    return (await session.execute(statement)).scalars().all()


async def count_due(session: AsyncSession, now: datetime) -> int:
    statement = select(func.count()).where(GatewayMonitor.next_check_at <= now)
    return int((await session.execute(statement)).scalar_one())


async def lock_monitor(
    session: AsyncSession, gateway_id: str, *, claim_token: str | None = None
) -> GatewayMonitor | None:
    """The monitor row, locked; with `claim_token`, only while that claim still holds it."""
    statement = select(GatewayMonitor).where(GatewayMonitor.gateway_id == gateway_id)
    if claim_token is not None:
        statement = statement.where(GatewayMonitor.claim_token == claim_token)
    statement = statement.with_for_update().execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def lock_claimed(
    session: AsyncSession, gateway_ids: Sequence[str], claim_token: str
) -> dict[str, GatewayMonitor]:
    """The monitors of a batch that this claim still holds, locked, in one query (in id
    order, as any other multi-row lock should take them)."""
    if not gateway_ids:
        return {}
    statement = (
        select(GatewayMonitor)
        .where(GatewayMonitor.gateway_id.in_(gateway_ids))
        .where(GatewayMonitor.claim_token == claim_token)
        .order_by(GatewayMonitor.gateway_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return {m.gateway_id: m for m in (await session.execute(statement)).scalars()}


async def gateway_by_id(session: AsyncSession, gateway_id: str) -> Gateway | None:
    statement = select(Gateway).where(Gateway.id == gateway_id)
    # Fresh from the database: a round's session may hold an older copy.
    statement = statement.execution_options(populate_existing=True)
    return (await session.execute(statement)).scalar_one_or_none()


async def claimed_gateways(
    session: AsyncSession, gateway_ids: Sequence[str]
) -> list[tuple[Gateway, datetime | None]]:
    """The claimed gateways, each with when its TLS certificate was last read."""
    if not gateway_ids:
        return []
    statement = (
        select(Gateway, GatewayMonitor.tls_checked_at)
        .join(GatewayMonitor, GatewayMonitor.gateway_id == Gateway.id)
        .where(Gateway.id.in_(gateway_ids))
        .execution_options(populate_existing=True)
    )
    return [(gateway, read) for gateway, read in (await session.execute(statement)).tuples()]


async def open_incident(session: AsyncSession, gateway_id: str, kind: str) -> Incident | None:
    statement = (
        select(Incident)
        .where(
            Incident.gateway_id == gateway_id, Incident.kind == kind, Incident.ended_at.is_(None)
        )
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def open_incidents(session: AsyncSession, gateway_id: str) -> Sequence[Incident]:
    statement = (
        select(Incident)
        .where(Incident.gateway_id == gateway_id, Incident.ended_at.is_(None))
        .with_for_update()
    )
    return (await session.execute(statement)).scalars().all()


# --- passive health -----------------------------------------------------------------------


@dataclass(frozen=True)
class Traffic:
    """One gateway's live traffic in the passive window."""

    calls: int = 0
    call_errors: int = 0
    attempts: int = 0
    attempt_errors: int = 0


async def live_traffic(session: AsyncSession, since: datetime) -> dict[str, Traffic]:
    """Calls and attempts per gateway since `since`, with their technical failures."""
    calls = select(
        GatewayCall.gateway_id,
        func.count(),
        func.count().filter(technical_call()),
    ).where(GatewayCall.created_at >= since)
    attempts = select(
        PaymentAttempt.gateway_id,
        func.count(),
        func.count().filter(technical_attempt()),
    ).where(PaymentAttempt.created_at >= since)
    found: dict[str, Traffic] = {}
    for gateway_id, total, errors in await session.execute(calls.group_by(GatewayCall.gateway_id)):
        found[gateway_id] = Traffic(calls=total, call_errors=errors)
    for gateway_id, total, errors in await session.execute(
        attempts.group_by(PaymentAttempt.gateway_id)
    ):
        before = found.get(gateway_id, Traffic())
        found[gateway_id] = Traffic(before.calls, before.call_errors, total, errors)
    return found


async def passively_degraded(session: AsyncSession) -> Sequence[str]:
    statement = select(GatewayMonitor.gateway_id).where(GatewayMonitor.passive_degraded.is_(True))
    return (await session.execute(statement)).scalars().all()


async def failed_calls_since(
    session: AsyncSession, gateway_id: str, since: datetime, limit: int
) -> Sequence[GatewayCall]:
    statement = (
        select(GatewayCall)
        .where(GatewayCall.gateway_id == gateway_id, GatewayCall.created_at >= since)
        .where(technical_call())
        .order_by(GatewayCall.created_at.desc())
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


# --- the alert outbox -------------------------------------------------------------------


async def add_alert(session: AsyncSession, values: dict[str, object]) -> str | None:
    """Insert an alert unless one with its dedup_key exists; the new id, or None."""
    statement = (
        pg_insert(Alert)
        .values(**values)
        .on_conflict_do_nothing(index_elements=[Alert.dedup_key])
        .returning(Alert.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def due_alert_ids(session: AsyncSession, now: datetime, limit: int) -> Sequence[str]:
    statement = (
        select(Alert.id)
        .where(Alert.sent_at.is_(None), Alert.next_attempt_at <= now)
        .order_by(Alert.next_attempt_at)
        .limit(limit)
    )
    return (await session.execute(statement)).scalars().all()


async def lock_unsent_alert(session: AsyncSession, alert_id: str) -> Alert | None:
    """The alert, locked, unless it was sent or another worker is sending it."""
    statement = (
        select(Alert)
        .where(Alert.id == alert_id, Alert.sent_at.is_(None))
        .with_for_update(skip_locked=True)
        .execution_options(populate_existing=True)
    )
    return (await session.execute(statement)).scalar_one_or_none()


async def recipients_for(session: AsyncSession, company_id: str, kind: str) -> list[str]:
    """Who gets `kind`: the company's recipients that chose it; with none configured at all,
    the company's owners (so a new company is not left unwarned)."""
    rows = (
        await session.execute(
            select(AlertRecipient.email, AlertRecipient.kinds).where(
                AlertRecipient.company_id == company_id
            )
        )
    ).all()
    if rows:
        return sorted(email for email, kinds in rows if kind in kinds)
    return sorted(await UserRepository(session).owners_of([company_id]))


# --- rollups --------------------------------------------------------------------------------

# Moves every raw check before :cutoff into its hour in one statement: rows are deleted and
# summed together, so a second run (or a second worker) finds nothing left to count twice.
_ROLL_UP = text(
    """
    WITH moved AS (
        DELETE FROM health_checks WHERE checked_at < :cutoff
        RETURNING gateway_id, company_id, checked_at, ok, latency_ms
    ), hours AS (
        SELECT gateway_id, company_id, date_trunc('hour', checked_at, 'UTC') AS hour,
               count(*) AS checks, count(*) FILTER (WHERE NOT ok) AS failures,
               percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms) AS p50,
               percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms) AS p95,
               max(latency_ms) AS latency_max
        FROM moved GROUP BY gateway_id, company_id, 3
    )
    INSERT INTO health_check_hours AS h (
        gateway_id, hour, company_id, checks, failures, latency_p50, latency_p95, latency_max)
    SELECT gateway_id, hour, company_id, checks, failures, p50, p95, latency_max FROM hours
    ON CONFLICT (gateway_id, hour) DO UPDATE SET
        -- A late row for an hour already rolled up: counts add, percentiles are weighted.
        latency_p50 = (h.latency_p50 * h.checks + excluded.latency_p50 * excluded.checks)
                      / (h.checks + excluded.checks),
        latency_p95 = (h.latency_p95 * h.checks + excluded.latency_p95 * excluded.checks)
                      / (h.checks + excluded.checks),
        latency_max = greatest(h.latency_max, excluded.latency_max),
        checks = h.checks + excluded.checks,
        failures = h.failures + excluded.failures
    """
)


async def roll_up_checks_before(session: AsyncSession, cutoff: datetime) -> int:
    """Turn raw checks older than `cutoff` (an hour boundary) into hourly rows; how many hours."""
    result = await session.execute(_ROLL_UP, {"cutoff": cutoff})
    return int(getattr(result, "rowcount", 0) or 0)
