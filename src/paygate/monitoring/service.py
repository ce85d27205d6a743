"""Gateway health for one company: statuses and figures, incidents, monitor settings, alert
recipients and the failure log. The JSON API and the pages both call this."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.errors import conflict
from paygate.kit.ids import new_id
from paygate.kit.pagination import PageParams
from paygate.monitoring.failures import Failure, FailureFilters, FailureLogRepository
from paygate.monitoring.models import AlertRecipient, GatewayMonitor, Incident
from paygate.monitoring.repository import (
    AlertRecipientRepository,
    Beat,
    Counts,
    HealthRepository,
    IncidentFilters,
    IncidentRepository,
)
from paygate.monitoring.schemas import (
    GatewayHealth,
    GatewayHealthSummary,
    Heartbeat,
    HourFigures,
    IncidentOut,
    LastCheck,
    MonitorSettings,
    MonitorUpdate,
    RecipientCreate,
    RecipientUpdate,
    TlsCertificate,
    Uptime,
    evidence_out,
)
from paygate.monitoring.status import AlertKind, HealthStatus, uptime_percent
from paygate.monitoring.system_repository import ensure_monitors
from paygate.monitoring.tls import https_base_url
from paygate.security import audit
from paygate.security.audit_actions import AuditAction
from paygate.security.audit_object_types import AuditObjectType
from paygate.settings import Settings

HEARTBEATS = 90
RECENT_INCIDENTS = 20


def incident_out(incident: Incident, now: datetime) -> IncidentOut:
    end = incident.ended_at or now
    return IncidentOut(
        id=incident.id,
        gateway_id=incident.gateway_id,
        kind=incident.kind,
        started_at=incident.started_at,
        ended_at=incident.ended_at,
        duration_seconds=max(0, int((end - incident.started_at).total_seconds())),
        cause=incident.cause,
        last_message=incident.last_message,
        failed_checks=incident.failed_checks,
        failed_calls=incident.failed_calls,
        resolution=incident.resolution,
        evidence=evidence_out(incident.evidence or []),
    )


def _status(gateway: Gateway, monitor: GatewayMonitor | None) -> HealthStatus:
    if not gateway.enabled:
        return HealthStatus.PAUSED
    if monitor is None or monitor.status == HealthStatus.PAUSED.value:
        return HealthStatus.UNKNOWN  # enabled again, not checked since
    return HealthStatus(monitor.status)


def _reason(status: HealthStatus, monitor: GatewayMonitor | None) -> str:
    if status is HealthStatus.PAUSED:
        return "The gateway is disabled: it is not checked."
    if monitor is None or status is HealthStatus.UNKNOWN:
        return "Not checked yet."
    message = monitor.last_message or ""
    if status is HealthStatus.DOWN:
        n = monitor.consecutive_failures
        return f"{n} check{'s' if n != 1 else ''} failed in a row: {message}"
    if status is HealthStatus.DEGRADED:
        if monitor.passive_degraded and monitor.passive_reason:
            return f"Live traffic is failing: {monitor.passive_reason}."
        return (
            f"The last check failed ({monitor.consecutive_failures} of "
            f"{monitor.failure_threshold} before down): {message}"
        )
    return "The last check succeeded."


class MonitoringService:
    def __init__(self, session: AsyncSession, settings: Settings, auth: AuthContext) -> None:
        self.session = session
        self.settings = settings
        self.auth = auth
        self.health = HealthRepository(session, auth.company_id)
        self.incidents = IncidentRepository(session, auth.company_id)
        self.recipients = AlertRecipientRepository(session, auth.company_id)

    # --- health ----------------------------------------------------------------------------

    def _summary(
        self,
        gateway: Gateway,
        monitor: GatewayMonitor | None,
        counts: dict[str, Counts],
        live: Counts,
        open_incidents: int,
    ) -> dict[str, Any]:
        status = _status(gateway, monitor)
        last = None
        if monitor is not None and monitor.last_check_at is not None:
            last = LastCheck(
                at=monitor.last_check_at,
                ok=bool(monitor.last_ok),
                latency_ms=monitor.last_latency_ms or 0,
                error_code=monitor.last_error_code,
                message=monitor.last_message,
            )

        def uptime(window: str) -> float | None:
            found = counts.get(window, Counts())
            return uptime_percent(found.checks, found.failures)

        return {
            "gateway_id": gateway.id,
            "name": gateway.name,
            "gateway_type": gateway.gateway_type,
            "environment": gateway.environment,
            "status": status,
            "status_since": monitor.status_since if monitor else None,
            "reason": _reason(status, monitor),
            "uptime": Uptime(last_24h=uptime("24h"), last_7d=uptime("7d"), last_30d=uptime("30d")),
            "latency_ms": monitor.last_latency_ms if monitor else None,
            "error_rate_24h": round(live.failures / live.checks, 4) if live.checks else None,
            "calls_24h": live.checks,
            "last_check": last,
            "next_check_at": monitor.next_check_at if monitor and gateway.enabled else None,
            "open_incidents": open_incidents,
            "monitor": MonitorSettings(
                interval_minutes=monitor.interval_minutes
                if monitor
                else self.settings.monitoring_default_interval_minutes,
                failure_threshold=monitor.failure_threshold
                if monitor
                else self.settings.monitoring_default_failure_threshold,
            ),
        }

    async def summaries(self) -> list[GatewayHealthSummary]:
        """Every gateway of the company with its status and figures."""
        now = utcnow()
        rows = await self.health.gateways()
        ids = [gateway.id for gateway, _ in rows]
        counts = await self.health.counts(ids, now)
        live = await self.health.live(ids, now - timedelta(hours=24))
        opened: dict[str, int] = {}
        for incident in await self.incidents.open_ones():
            opened[incident.gateway_id] = opened.get(incident.gateway_id, 0) + 1
        return [
            GatewayHealthSummary(
                **self._summary(g, m, counts[g.id], live.get(g.id, Counts()), opened.get(g.id, 0))
            )
            for g, m in rows
        ]

    async def heartbeats(self, gateway_ids: Sequence[str]) -> dict[str, list[Heartbeat]]:
        beats = await self.health.beats(gateway_ids, HEARTBEATS)
        return {gid: [_heartbeat(b) for b in found] for gid, found in beats.items()}

    async def gateway_health(self, gateway_id: str, *, hours: int = 24) -> GatewayHealth:
        now = utcnow()
        gateway, monitor = await self.health.gateway(gateway_id)
        counts = await self.health.counts([gateway.id], now)
        live = await self.health.live([gateway.id], now - timedelta(hours=24))
        recent, _ = await self.incidents.search(
            IncidentFilters(gateway_id=gateway.id), PageParams(limit=RECENT_INCIDENTS)
        )
        since = (now - timedelta(hours=hours)).replace(minute=0, second=0, microsecond=0)
        points = await self.health.hours(gateway.id, since)
        summary = self._summary(
            gateway,
            monitor,
            counts[gateway.id],
            live.get(gateway.id, Counts()),
            sum(1 for i in recent if i.ended_at is None),
        )
        return GatewayHealth(
            **summary,
            heartbeats=(await self.heartbeats([gateway.id]))[gateway.id],
            hours=[
                HourFigures(
                    hour=p.hour,
                    checks=p.checks,
                    check_failures=p.check_failures,
                    latency_p50_ms=_round(p.latency_p50),
                    latency_p95_ms=_round(p.latency_p95),
                    calls=p.calls,
                    call_errors=p.call_errors,
                    error_rate=round(p.call_errors / p.calls, 4) if p.calls else None,
                )
                for p in points
            ],
            incidents=[incident_out(i, now) for i in recent],
            tls=_tls(gateway, monitor, now, self.settings),
        )

    # --- incidents ---------------------------------------------------------------------------

    async def list_incidents(
        self, filters: IncidentFilters, params: PageParams
    ) -> tuple[list[IncidentOut], str | None]:
        rows, cursor = await self.incidents.search(filters, params)
        now = utcnow()
        return [incident_out(i, now) for i in rows], cursor

    async def get_incident(self, incident_id: str) -> IncidentOut:
        return incident_out(await self.incidents.get(incident_id), utcnow())

    # --- monitor settings ----------------------------------------------------------------------

    async def update_monitor(self, gateway_id: str, change: MonitorUpdate) -> MonitorSettings:
        """Change a gateway's check interval or failure threshold (audited); a new interval
        takes effect from the next check."""
        gateway, monitor = await self.health.gateway(gateway_id)
        if monitor is None:
            await ensure_monitors(
                self.session,
                utcnow(),
                self.settings.monitoring_default_interval_minutes,
                self.settings.monitoring_default_failure_threshold,
            )
        monitor = await self.health.lock_monitor(gateway.id)
        assert monitor is not None
        before = {
            "interval_minutes": monitor.interval_minutes,
            "failure_threshold": monitor.failure_threshold,
        }
        if change.interval_minutes is not None:
            if change.interval_minutes < monitor.interval_minutes:
                # Sooner, not later: the next slot must not stay a long interval away.
                monitor.next_check_at = min(
                    monitor.next_check_at, utcnow() + timedelta(minutes=change.interval_minutes)
                )
            monitor.interval_minutes = change.interval_minutes
        if change.failure_threshold is not None:
            monitor.failure_threshold = change.failure_threshold
        monitor.updated_at = utcnow()
        after = {
            "interval_minutes": monitor.interval_minutes,
            "failure_threshold": monitor.failure_threshold,
        }
        await self.session.flush()
        await self._audit(
            "gateway.monitoring_updated", "gateway", gateway.id, audit.diff(before, after)
        )
        return MonitorSettings(**after)

    # --- alert recipients ------------------------------------------------------------------------

    async def list_recipients(self) -> Sequence[AlertRecipient]:
        return await self.recipients.listing()

    async def add_recipient(self, request: RecipientCreate) -> AlertRecipient:
        email = str(request.email).strip().lower()
        if await self.recipients.by_email(email) is not None:
            raise conflict("This address already receives alerts: change its alert kinds.")
        now = utcnow()
        recipient = AlertRecipient(
            id=new_id("alr"),
            company_id=self.auth.company_id,
            email=email,
            kinds=_kinds(request.kinds),
            created_at=now,
            updated_at=now,
        )
        try:
            async with self.session.begin_nested():
                await self.recipients.add(recipient)
        except IntegrityError:
            raise conflict("This address already receives alerts.") from None
        await self._audit(
            "alert_recipient.added",
            "alert_recipient",
            recipient.id,
            {
                "email": {"before": None, "after": email},
                "kinds": {"before": None, "after": recipient.kinds},
            },
        )
        return recipient

    async def update_recipient(self, recipient_id: str, request: RecipientUpdate) -> AlertRecipient:
        recipient = await self.recipients.get(recipient_id, for_update=True)
        before = list(recipient.kinds)
        recipient.kinds = _kinds(request.kinds)
        recipient.updated_at = utcnow()
        await self.session.flush()
        await self._audit(
            "alert_recipient.updated",
            "alert_recipient",
            recipient.id,
            audit.diff({"kinds": before}, {"kinds": recipient.kinds}),
            detail=recipient.email,
        )
        return recipient

    async def remove_recipient(self, recipient_id: str) -> None:
        recipient = await self.recipients.get(recipient_id, for_update=True)
        await self.session.delete(recipient)
        await self.session.flush()
        await self._audit(
            "alert_recipient.removed",
            "alert_recipient",
            recipient_id,
            {"email": {"before": recipient.email, "after": None}},
        )

    # --- the failure log -------------------------------------------------------------------------

    async def failures(
        self, filters: FailureFilters, params: PageParams
    ) -> tuple[list[Failure], str | None]:
        return await FailureLogRepository(self.session, self.auth.company_id).search(
            filters, params.limit, params.cursor
        )

    async def _audit(
        self,
        action: AuditAction,
        object_type: AuditObjectType,
        object_id: str,
        changes: dict[str, Any],
        detail: str | None = None,
    ) -> None:
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type=object_type,
            object_id=object_id,
            changes=changes,
            detail=detail,
        )


def _kinds(kinds: Sequence[AlertKind]) -> list[str]:
    """Each kind once, in the order AlertKind lists them."""
    chosen = {AlertKind(k) for k in kinds}
    return [k.value for k in AlertKind if k in chosen]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _heartbeat(beat: Beat) -> Heartbeat:
    return Heartbeat(
        at=beat.at,
        ok=beat.ok,
        state=beat.state,
        latency_ms=beat.latency_ms,
        message=beat.message,
    )


def _tls(
    gateway: Gateway, monitor: GatewayMonitor | None, now: datetime, settings: Settings
) -> TlsCertificate | None:
    if https_base_url(gateway) is None:
        return None
    expires = monitor.tls_expires_at if monitor else None
    warn = timedelta(days=settings.monitoring_tls_warning_days)
    return TlsCertificate(
        expires_at=expires,
        checked_at=monitor.tls_checked_at if monitor else None,
        error=monitor.tls_error if monitor else None,
        expiring_soon=expires is not None and expires - now <= warn,
    )
