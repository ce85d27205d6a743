"""State changes of one gateway's monitor, under its row lock: checks and live traffic move
its status, open and close incidents, raise alerts and announce down and up.

Every function here runs inside the caller's transaction with the monitor row locked, so
two workers can never both open (or close) the same incident; the partial unique index on
open incidents and the alerts' dedup keys back that up in the database.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.connection import ConnectionResult
from paygate.gateways.models import Gateway
from paygate.kit.ids import new_id
from paygate.monitoring import alerts
from paygate.monitoring.models import GatewayMonitor, HealthCheck, Incident
from paygate.monitoring.signals import GatewayStatusChange, gateway_status_changed
from paygate.monitoring.status import (
    AlertKind,
    CheckState,
    HealthStatus,
    IncidentKind,
    after_check,
    derive_status,
    next_slot,
)
from paygate.monitoring.system_repository import Traffic, failed_calls_since, open_incident
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

# An incident keeps its first failures as evidence (what went wrong, when); later ones are
# counted, not kept, so an incident of a week stays one small row.
EVIDENCE_LIMIT = 20


def _evidence(incident: Incident, item: dict[str, Any]) -> None:
    if len(incident.evidence or []) < EVIDENCE_LIMIT:
        # A new list: SQLAlchemy sees a reassignment, not an in-place change of the JSONB.
        incident.evidence = [*(incident.evidence or []), item]


def _check_evidence(check: HealthCheck) -> dict[str, Any]:
    return {
        "source": "check",
        "at": check.checked_at.isoformat(),
        "error_code": check.error_code,
        "message": check.message,
        "latency_ms": check.latency_ms,
    }


def _set_status(monitor: GatewayMonitor, gateway: Gateway, now: datetime) -> HealthStatus:
    status = derive_status(
        enabled=gateway.enabled and gateway.archived_at is None,
        check_state=CheckState(monitor.check_state),
        passive_degraded=monitor.passive_degraded,
    )
    if monitor.status != status.value:
        monitor.status = status.value
        monitor.status_since = now
    monitor.updated_at = now
    return status


async def _announce(
    session: AsyncSession,
    gateway: Gateway,
    incident: Incident,
    event: Literal["gateway.down", "gateway.up"],
    before: str,
    after: HealthStatus,
    now: datetime,
) -> None:
    ended = incident.ended_at
    await gateway_status_changed.send(
        session,
        GatewayStatusChange(
            company_id=gateway.company_id,
            gateway_id=gateway.id,
            gateway_name=gateway.name,
            gateway_type=gateway.gateway_type,
            environment=gateway.environment,
            event=event,
            from_status=before,
            to_status=after.value,
            incident_id=incident.id,
            cause=incident.cause,
            started_at=incident.started_at,
            ended_at=ended,
            duration_seconds=int((ended - incident.started_at).total_seconds()) if ended else None,
            occurred_at=now,
        ),
    )


def changes_incident(monitor: GatewayMonitor, ok: bool) -> bool:
    """Whether a check with this outcome opens, extends or closes an outage (queries, an
    alert, the signal) rather than only moving the monitor on: what `record_check` does
    beyond `apply_check`."""
    if ok:
        return (
            monitor.check_state == CheckState.DOWN.value
            or monitor.status == HealthStatus.DOWN.value
        )
    outcome = after_check(False, monitor.consecutive_failures, monitor.failure_threshold)
    return outcome.state is CheckState.DOWN


def apply_check(
    monitor: GatewayMonitor, gateway: Gateway, result: ConnectionResult, now: datetime
) -> dict[str, Any]:
    """Move the monitor on by one check's result (its check state, last result, next slot,
    the claim released, the status derived) and return the result's `health_checks` row.
    No query: a round applies a whole batch of routine results this way, and inserts their
    rows in one statement."""
    outcome = after_check(result.ok, monitor.consecutive_failures, monitor.failure_threshold)
    if not result.ok and monitor.failing_since is None:
        monitor.failing_since = now
    elif result.ok:
        monitor.failing_since = None
    monitor.check_state = outcome.state.value
    monitor.consecutive_failures = outcome.consecutive_failures
    monitor.last_check_at = now
    monitor.last_ok = result.ok
    monitor.last_latency_ms = result.latency_ms
    monitor.last_error_code = result.error_code
    monitor.last_message = result.message
    monitor.next_check_at = next_slot(
        monitor.next_check_at, timedelta(minutes=monitor.interval_minutes), now
    )
    monitor.claimed_until = None
    monitor.claim_token = None
    _set_status(monitor, gateway, now)
    return {
        "gateway_id": gateway.id,
        "company_id": gateway.company_id,
        "checked_at": now,
        "ok": result.ok,
        "latency_ms": result.latency_ms,
        "state": outcome.state.value,
        "error_code": result.error_code,
        "message": None if result.ok else result.message,
    }


async def record_check(
    session: AsyncSession,
    monitor: GatewayMonitor,
    gateway: Gateway,
    result: ConnectionResult,
    now: datetime,
    settings: Settings,
) -> HealthStatus:
    """Store one check's result and apply it: down at the threshold, up after one success."""
    before = monitor.status
    was_down = monitor.check_state == CheckState.DOWN.value
    check = HealthCheck(**apply_check(monitor, gateway, result, now))
    session.add(check)
    status = HealthStatus(monitor.status)
    await session.flush()

    if monitor.check_state == CheckState.DOWN.value:
        incident = await open_incident(session, gateway.id, IncidentKind.OUTAGE.value)
        if incident is None:
            await _open_outage(session, monitor, gateway, result, before, status, now, settings)
        else:
            incident.failed_checks += 1
            incident.last_message = result.message
            _evidence(incident, _check_evidence(check))
    elif result.ok and (was_down or before == HealthStatus.DOWN.value):
        await _close_outage(session, gateway, before, status, now, settings)
    return status


async def _open_outage(
    session: AsyncSession,
    monitor: GatewayMonitor,
    gateway: Gateway,
    result: ConnectionResult,
    before: str,
    status: HealthStatus,
    now: datetime,
    settings: Settings,
) -> None:
    started = monitor.failing_since or now
    streak = (
        await session.execute(
            select(HealthCheck)
            .where(
                HealthCheck.gateway_id == gateway.id,
                HealthCheck.checked_at >= started,
                HealthCheck.ok.is_(False),
            )
            .order_by(HealthCheck.checked_at)
            .limit(EVIDENCE_LIMIT)
        )
    ).scalars()
    incident = Incident(
        id=new_id("inc"),
        company_id=gateway.company_id,
        gateway_id=gateway.id,
        kind=IncidentKind.OUTAGE.value,
        started_at=started,
        cause=result.message,
        last_message=result.message,
        failed_checks=monitor.consecutive_failures,
        failed_calls=0,
        evidence=[_check_evidence(c) for c in streak],
    )
    session.add(incident)
    await session.flush()
    logger.warning("gateway_down", gateway_id=gateway.id, incident_id=incident.id)
    await alerts.raise_alert(
        session,
        kind=AlertKind.GATEWAY_DOWN,
        gateway=gateway,
        incident=incident,
        dedup_key=f"{incident.id}:down",
        mail=alerts.down_mail(gateway, incident, monitor.consecutive_failures, settings),
        now=now,
    )
    await _announce(session, gateway, incident, "gateway.down", before, status, now)


async def _close_outage(
    session: AsyncSession,
    gateway: Gateway,
    before: str,
    status: HealthStatus,
    now: datetime,
    settings: Settings,
) -> None:
    incident = await open_incident(session, gateway.id, IncidentKind.OUTAGE.value)
    if incident is None:
        return
    incident.ended_at = now
    incident.resolution = "recovered"
    await session.flush()
    logger.info("gateway_up", gateway_id=gateway.id, incident_id=incident.id)
    await alerts.raise_alert(
        session,
        kind=AlertKind.GATEWAY_UP,
        gateway=gateway,
        incident=incident,
        dedup_key=f"{incident.id}:up",
        mail=alerts.recovery_mail(gateway, incident, settings),
        now=now,
    )
    await _announce(session, gateway, incident, "gateway.up", before, status, now)


@dataclass(frozen=True)
class TrafficVerdict:
    degraded: bool
    reason: str | None


def judge_traffic(traffic: Traffic, settings: Settings) -> TrafficVerdict:
    """Degraded when calls or attempts fail technically at the rate, at least min times."""
    minimum = settings.monitoring_passive_min_failures
    rate = settings.monitoring_passive_failure_rate
    window = settings.monitoring_passive_window_minutes
    for failed, total, what in (
        (traffic.call_errors, traffic.calls, "gateway calls"),
        (traffic.attempt_errors, traffic.attempts, "payment attempts"),
    ):
        if total and failed >= minimum and failed / total >= rate:
            share = round(100 * failed / total)
            return TrafficVerdict(
                True, f"{failed} of {total} {what} failed ({share}%) in {window} min"
            )
    return TrafficVerdict(False, None)


async def apply_traffic(
    session: AsyncSession,
    monitor: GatewayMonitor,
    gateway: Gateway,
    traffic: Traffic,
    now: datetime,
    settings: Settings,
) -> HealthStatus:
    """Mark the gateway degraded (or not) from its live traffic; open or close the
    degradation incident, and raise the failure-spike alert once per incident."""
    verdict = judge_traffic(traffic, settings)
    since = now - timedelta(minutes=settings.monitoring_passive_window_minutes)
    incident = await open_incident(session, gateway.id, IncidentKind.DEGRADATION.value)
    if verdict.degraded:
        assert verdict.reason is not None
        calls = await failed_calls_since(session, gateway.id, since, EVIDENCE_LIMIT)
        latest = calls[0].error if calls else None
        if incident is None:
            incident = Incident(
                id=new_id("inc"),
                company_id=gateway.company_id,
                gateway_id=gateway.id,
                kind=IncidentKind.DEGRADATION.value,
                started_at=now,
                cause=verdict.reason,
                last_message=latest,
                failed_checks=0,
                failed_calls=max(traffic.call_errors, traffic.attempt_errors),
                evidence=[
                    {
                        "source": "call",
                        "at": call.created_at.isoformat(),
                        "call_id": call.id,
                        "operation": call.operation,
                        "outcome": call.outcome,
                        "http_status": call.http_status,
                        "message": call.error,
                        "payment_id": call.payment_id,
                        "refund_id": call.refund_id,
                    }
                    for call in reversed(calls)
                ],
            )
            session.add(incident)
            await session.flush()
            logger.warning("gateway_degraded", gateway_id=gateway.id, incident_id=incident.id)
            await alerts.raise_alert(
                session,
                kind=AlertKind.FAILURE_SPIKE,
                gateway=gateway,
                incident=incident,
                dedup_key=f"{incident.id}:spike",
                mail=alerts.spike_mail(gateway, incident, verdict.reason, settings),
                now=now,
            )
        else:
            incident.failed_calls = max(
                incident.failed_calls, traffic.call_errors, traffic.attempt_errors
            )
            incident.last_message = latest or incident.last_message
    elif incident is not None:
        incident.ended_at = now
        incident.resolution = "recovered"
    monitor.passive_degraded = verdict.degraded
    monitor.passive_reason = verdict.reason
    return _set_status(monitor, gateway, now)


async def pause(session: AsyncSession, monitor: GatewayMonitor, now: datetime) -> None:
    """A disabled or archived gateway: no checks, its open incidents end as "paused"
    (without a recovery notice: nothing recovered)."""
    for kind in IncidentKind:
        incident = await open_incident(session, monitor.gateway_id, kind.value)
        if incident is not None:
            incident.ended_at = now
            incident.resolution = "paused"
    monitor.status = HealthStatus.PAUSED.value
    monitor.status_since = now
    monitor.passive_degraded = False
    monitor.passive_reason = None
    monitor.claimed_until = None
    monitor.claim_token = None
    monitor.updated_at = now


def resume(monitor: GatewayMonitor, now: datetime) -> None:
    """Enabled again: unknown until its first check, which is due at once."""
    monitor.status = HealthStatus.UNKNOWN.value
    monitor.status_since = now
    monitor.check_state = CheckState.UNKNOWN.value
    monitor.consecutive_failures = 0
    monitor.failing_since = None
    monitor.next_check_at = now
    monitor.updated_at = now
