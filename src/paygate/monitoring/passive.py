"""Passive health: live payments and refunds that fail for technical reasons (timeouts,
5xx, connection errors) mark their gateway degraded between two scheduled checks.

It reads what the payment path already writes (`gateway_calls`, `payment_attempts`), so
the payment path pays nothing for it; a job runs it every minute over a sliding window.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import incidents
from paygate.monitoring.system_repository import (
    Traffic,
    ensure_monitors,
    gateway_by_id,
    live_traffic,
    lock_monitor,
    passively_degraded,
)
from paygate.settings import Settings

logger = structlog.get_logger(__name__)


async def evaluate(database: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """Judge every gateway with technical failures in the window, and every gateway marked
    degraded before (it may have recovered); returns how many changed state."""
    moment = now or utcnow()
    since = moment - timedelta(minutes=settings.monitoring_passive_window_minutes)
    async with database.transaction() as session:
        await ensure_monitors(
            session,
            moment,
            settings.monitoring_default_interval_minutes,
            settings.monitoring_default_failure_threshold,
        )
        traffic = await live_traffic(session, since)
        degraded_before = set(await passively_degraded(session))
    failing = {gid for gid, t in traffic.items() if t.call_errors or t.attempt_errors}
    changed = 0
    for gateway_id in sorted(failing | degraded_before):
        # One small transaction per gateway, under its monitor's row lock (as checks take);
        # one gateway's trouble is logged and does not stop the others.
        try:
            changed += await _judge(database, settings, gateway_id, traffic, moment)
        except Exception as exc:
            logger.error("passive_health_failed", gateway_id=gateway_id, error=type(exc).__name__)
    if changed:
        logger.info("passive_health_changed", gateways=changed)
    return changed


async def _judge(
    database: Database,
    settings: Settings,
    gateway_id: str,
    traffic: dict[str, Traffic],
    moment: datetime,
) -> int:
    async with database.transaction() as session:
        monitor = await lock_monitor(session, gateway_id)
        gateway = await gateway_by_id(session, gateway_id)
        if monitor is None or gateway is None:
            return 0
        if monitor.status == "paused" or not gateway.enabled or gateway.archived_at:
            return 0  # a paused gateway is not judged (the next round pauses it)
        was = monitor.passive_degraded
        await incidents.apply_traffic(
            session, monitor, gateway, traffic.get(gateway_id, Traffic()), moment, settings
        )
        return int(was != monitor.passive_degraded)
