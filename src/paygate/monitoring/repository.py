"""Every tenant-scoped query of monitoring: monitors, figures, incidents, alert recipients.

Another company's gateway, incident or recipient is simply not found (404). The figures
read the raw checks (the last `monitoring_raw_retention_days`) and the hourly rollups
(older hours) together; the two never hold the same hour.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.kit.errors import not_found
from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.monitoring.models import (
    AlertRecipient,
    GatewayMonitor,
    HealthCheck,
    HealthCheckHour,
    Incident,
)
from paygate.monitoring.system_repository import technical_call
from paygate.payments.models import GatewayCall

WINDOWS = {"24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


@dataclass(frozen=True)
class Counts:
    checks: int = 0
    failures: int = 0


@dataclass(frozen=True)
class Beat:
    at: datetime
    ok: bool
    state: str
    latency_ms: int
    message: str | None


@dataclass(frozen=True)
class HourPoint:
    hour: datetime
    checks: int = 0
    check_failures: int = 0
    latency_p50: float | None = None
    latency_p95: float | None = None
    calls: int = 0
    call_errors: int = 0


_HOURS_OF_CHECKS = text(
    """
    SELECT date_trunc('hour', checked_at, 'UTC') AS hour, count(*),
           count(*) FILTER (WHERE NOT ok),
           percentile_cont(0.5) WITHIN GROUP (ORDER BY latency_ms),
           percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
    FROM health_checks WHERE gateway_id = :gateway_id AND checked_at >= :since
    GROUP BY 1
    UNION ALL
    SELECT hour, checks, failures, latency_p50, latency_p95
    FROM health_check_hours WHERE gateway_id = :gateway_id AND hour >= :since
    """
)

_LAST_BEATS = text(
    """
    SELECT g.id, b.checked_at, b.ok, b.state, b.latency_ms, b.message
    FROM unnest(CAST(:ids AS varchar[])) AS g(id)
    CROSS JOIN LATERAL (
        SELECT checked_at, ok, state, latency_ms, message FROM health_checks
        WHERE gateway_id = g.id ORDER BY checked_at DESC LIMIT :limit
    ) AS b
    ORDER BY g.id, b.checked_at
    """
)


class HealthRepository:
    """A company's gateways with their monitors, and the figures drawn from their checks."""

    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    def _gateways(self) -> Select[Gateway, GatewayMonitor]:
        return (
            select(Gateway, GatewayMonitor)
            .outerjoin(GatewayMonitor, GatewayMonitor.gateway_id == Gateway.id)
            .where(Gateway.company_id == self.company_id, Gateway.archived_at.is_(None))
        )

    async def gateways(self) -> Sequence[tuple[Gateway, GatewayMonitor | None]]:
        statement = self._gateways().order_by(Gateway.priority, Gateway.created_at)
        return [(g, m) for g, m in (await self.session.execute(statement)).tuples()]

    async def gateway(self, gateway_id: str) -> tuple[Gateway, GatewayMonitor | None]:
        statement = self._gateways().where(Gateway.id == gateway_id)
        row = (await self.session.execute(statement)).tuples().one_or_none()
        if row is None:
            raise not_found("gateway")
        return row

    async def lock_monitor(self, gateway_id: str) -> GatewayMonitor | None:
        statement = (
            select(GatewayMonitor)
            .where(
                GatewayMonitor.company_id == self.company_id,
                GatewayMonitor.gateway_id == gateway_id,
            )
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def counts(
        self, gateway_ids: Sequence[str], now: datetime
    ) -> dict[str, dict[str, Counts]]:
        """Checks and failed checks per gateway in each of WINDOWS (raw rows plus rollups)."""
        found: dict[str, dict[str, Counts]] = {gid: {} for gid in gateway_ids}
        if not gateway_ids:
            return found
        raw = [
            (
                func.count().filter(HealthCheck.checked_at >= now - span),
                func.count().filter(HealthCheck.checked_at >= now - span, ~HealthCheck.ok),
            )
            for span in WINDOWS.values()
        ]
        rows = await self.session.execute(
            select(HealthCheck.gateway_id, *[c for pair in raw for c in pair])
            .where(
                HealthCheck.gateway_id.in_(gateway_ids),
                HealthCheck.checked_at >= now - max(WINDOWS.values()),
            )
            .group_by(HealthCheck.gateway_id)
        )
        for gateway_id, *numbers in rows:
            for index, name in enumerate(WINDOWS):
                found[gateway_id][name] = Counts(numbers[2 * index], numbers[2 * index + 1])
        hour = HealthCheckHour.hour
        rolled_up = [
            (
                func.coalesce(func.sum(HealthCheckHour.checks).filter(hour >= now - span), 0),
                func.coalesce(func.sum(HealthCheckHour.failures).filter(hour >= now - span), 0),
            )
            for span in WINDOWS.values()
        ]
        rolled = await self.session.execute(
            select(HealthCheckHour.gateway_id, *[c for pair in rolled_up for c in pair])
            .where(
                HealthCheckHour.gateway_id.in_(gateway_ids),
                hour >= now - max(WINDOWS.values()),
            )
            .group_by(HealthCheckHour.gateway_id)
        )
        for gateway_id, *numbers in rolled:
            for index, name in enumerate(WINDOWS):
                before = found[gateway_id].get(name, Counts())
                found[gateway_id][name] = Counts(
                    before.checks + int(numbers[2 * index]),
                    before.failures + int(numbers[2 * index + 1]),
                )
        return found

    async def beats(self, gateway_ids: Sequence[str], limit: int) -> dict[str, list[Beat]]:
        """The last `limit` checks of each gateway, oldest first (the heartbeat bar)."""
        found: dict[str, list[Beat]] = {gid: [] for gid in gateway_ids}
        if gateway_ids:
            rows = await self.session.execute(
                _LAST_BEATS, {"ids": list(gateway_ids), "limit": limit}
            )
            for gateway_id, at, ok, state, latency, message in rows:
                found[gateway_id].append(Beat(at, ok, state, latency, message))
        return found

    async def live(self, gateway_ids: Sequence[str], since: datetime) -> dict[str, Counts]:
        """Live gateway calls and their technical failures per gateway since `since`."""
        if not gateway_ids:
            return {}
        rows = await self.session.execute(
            select(GatewayCall.gateway_id, func.count(), func.count().filter(technical_call()))
            .where(GatewayCall.gateway_id.in_(gateway_ids), GatewayCall.created_at >= since)
            .group_by(GatewayCall.gateway_id)
        )
        return {gateway_id: Counts(total, errors) for gateway_id, total, errors in rows}

    async def hours(self, gateway_id: str, since: datetime) -> list[HourPoint]:
        """Per hour since `since`: checks, their latency p50 and p95, live calls and errors."""
        points: dict[datetime, HourPoint] = {}
        for hour, checks, failures, p50, p95 in await self.session.execute(
            _HOURS_OF_CHECKS, {"gateway_id": gateway_id, "since": since}
        ):
            points[hour] = HourPoint(hour, int(checks), int(failures), p50, p95)
        hour_of = func.date_trunc("hour", GatewayCall.created_at, "UTC")
        calls = await self.session.execute(
            select(hour_of, func.count(), func.count().filter(technical_call()))
            .where(GatewayCall.gateway_id == gateway_id, GatewayCall.created_at >= since)
            .group_by(hour_of)
        )
        for hour, total, errors in calls:
            base = points.get(hour, HourPoint(hour))
            points[hour] = HourPoint(
                hour, base.checks, base.check_failures, base.latency_p50, base.latency_p95,
                int(total), int(errors),
            )  # fmt: skip
        return [points[hour] for hour in sorted(points)]


@dataclass(frozen=True)
class IncidentFilters:
    gateway_id: str | None = None
    kind: str | None = None
    open: bool | None = None
    since: datetime | None = None


class IncidentRepository(TenantRepository[Incident]):
    model = Incident
    what = "incident"

    async def search(
        self, filters: IncidentFilters, params: PageParams
    ) -> tuple[Sequence[Incident], str | None]:
        statement = apply_filters(
            self.scoped(),
            [
                (filters.gateway_id, lambda v: Incident.gateway_id == v),
                (filters.kind, lambda v: Incident.kind == v),
                (
                    filters.open,
                    lambda v: Incident.ended_at.is_(None) if v else Incident.ended_at.is_not(None),
                ),
                (filters.since, lambda v: Incident.started_at >= v),
            ],
        )
        return await self.page(statement, params)

    async def open_ones(self) -> Sequence[Incident]:
        statement = self.scoped().where(Incident.ended_at.is_(None)).order_by(Incident.id.desc())
        return (await self.session.execute(statement)).scalars().all()


class AlertRecipientRepository(TenantRepository[AlertRecipient]):
    model = AlertRecipient
    what = "alert recipient"

    async def listing(self) -> Sequence[AlertRecipient]:
        statement = self.scoped().order_by(AlertRecipient.email)
        return (await self.session.execute(statement)).scalars().all()

    async def by_email(self, email: str) -> AlertRecipient | None:
        statement = self.scoped().where(AlertRecipient.email == email)
        return (await self.session.execute(statement)).scalar_one_or_none()
