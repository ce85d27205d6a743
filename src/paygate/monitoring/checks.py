"""Scheduled health checks: a round claims the due gateways, checks them with bounded
concurrency (the same real call as "Test connection"), and records each result.

How "each gateway once per interval, any number of workers, nothing lost" holds:

- claims are disjoint: a claim is one UPDATE over rows picked FOR UPDATE SKIP LOCKED,
  setting a lease (`claimed_until`) and a token; a leased row is not due;
- only the token's holder records the result and moves `next_check_at` to the next slot
  of the gateway's schedule (its phase kept, so gateways stay spread over the interval);
- a worker that dies mid-round recorded nothing: the slot is still due, and once the
  lease runs out the next round (on any worker) claims and checks it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import insert

from paygate.db import Database
from paygate.gateways.connection import ConnectionResult, probe_connection
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.monitoring import incidents, tls
from paygate.monitoring.models import HealthCheck
from paygate.monitoring.system_repository import (
    claim_due,
    claimed_gateways,
    ensure_monitors,
    gateway_by_id,
    lock_claimed,
    lock_monitor,
    monitors_to_pause,
    monitors_to_resume,
)
from paygate.security.crypto import Keyring
from paygate.security.ssrf import Resolver, resolve_host
from paygate.settings import Settings

logger = structlog.get_logger(__name__)


def lease_for(settings: Settings) -> timedelta:
    """How long a claim holds a check: longer than the slowest check can take."""
    return timedelta(seconds=max(60.0, settings.gateway_timeout_seconds * 4 + 30))


@dataclass
class RoundReport:
    claimed: int = 0
    recorded: int = 0
    # Results dropped because the claim had expired and another round took the check over.
    superseded: int = 0


async def prepare(database: Database, settings: Settings, now: datetime) -> None:
    """Monitors for new gateways; pause the disabled, resume the enabled again."""
    async with database.transaction() as session:
        await ensure_monitors(
            session,
            now,
            settings.monitoring_default_interval_minutes,
            settings.monitoring_default_failure_threshold,
        )
        to_pause = await monitors_to_pause(session)
        to_resume = await monitors_to_resume(session)
    for gateway_id in to_pause:
        async with database.transaction() as session:
            monitor = await lock_monitor(session, gateway_id)
            gateway = await gateway_by_id(session, gateway_id)
            off = gateway is None or not gateway.enabled or gateway.archived_at is not None
            if monitor is not None and monitor.status != "paused" and off:
                await incidents.pause(session, monitor, now)
    for gateway_id in to_resume:
        async with database.transaction() as session:
            monitor = await lock_monitor(session, gateway_id)
            if monitor is not None and monitor.status == "paused":
                incidents.resume(monitor, now)


async def run_round(
    database: Database,
    keyring: Keyring,
    settings: Settings,
    *,
    now: datetime | None = None,
    resolver: Resolver = resolve_host,
) -> RoundReport:
    """Check every due gateway, `monitoring_concurrency` at a time, until none is due or
    the round's time is up (the next round, on whichever worker, carries on).

    `now` fixes the clock (tests replay a schedule); otherwise each batch reads the time.
    """
    fixed = now
    await prepare(database, settings, fixed or utcnow())
    report = RoundReport()
    deadline = time.monotonic() + settings.monitoring_round_seconds
    lease = lease_for(settings)
    while time.monotonic() < deadline:
        moment = fixed or utcnow()
        token = uuid.uuid4().hex
        async with database.transaction() as session:
            claimed = await claim_due(
                session, moment, moment + lease, token, settings.monitoring_concurrency
            )
            # The batch's gateways in one query, not one transaction per check.
            batch = await claimed_gateways(session, claimed)
        if not claimed:
            break
        report.claimed += len(claimed)
        findings = await asyncio.gather(
            *(
                probe(gateway, tls_last, keyring, settings, fixed, resolver)
                for gateway, tls_last in batch
            )
        )
        recorded = await record_batch(database, findings, token, fixed, settings)
        report.recorded += recorded
        report.superseded += len(findings) - recorded
    if report.claimed:
        logger.info("health_check_round", **report.__dict__)
    return report


@dataclass(frozen=True)
class Finding:
    """What checking one claimed gateway found, before anything is recorded."""

    gateway: Gateway
    result: ConnectionResult
    reading: tls.TlsReading | None


async def probe(
    gateway: Gateway,
    tls_last: datetime | None,
    keyring: Keyring,
    settings: Settings,
    now: datetime | None,
    resolver: Resolver = resolve_host,
) -> Finding:
    """The real call "Test connection" makes (and the TLS certificate, when a day old)."""
    try:
        result = await probe_connection(gateway, keyring, settings, resolver)
    except Exception as exc:  # one gateway's trouble must not end the round
        logger.error("health_check_crashed", gateway_id=gateway.id, error=type(exc).__name__)
        result = ConnectionResult(False, "The check could not run (internal error).", 0, "error")
    reading = await tls.read_if_due(gateway, tls_last, keyring, settings, resolver, now or utcnow())
    return Finding(gateway, result, reading)


async def record_batch(
    database: Database,
    findings: Sequence[Finding],
    token: str,
    now: datetime | None,
    settings: Settings,
) -> int:
    """Record a batch's results; how many were recorded (the rest lost their claim or
    could not be written, and stay due).

    Routine results (the monitor moves on, no outage opens, grows or ends) are written
    together: one lock query, one INSERT of every result, the monitors' UPDATEs sent as
    an executemany, one commit. A transaction per check cost about as much CPU as the
    check's HTTP request. A result that changes an outage, or carries a TLS reading, then
    gets a transaction of its own, so a failing alert or signal listener rolls back that
    one only.
    """
    eventful: list[Finding] = []
    rows: list[dict[str, Any]] = []
    try:
        async with database.transaction() as session:
            ids = [finding.gateway.id for finding in findings]
            monitors = await lock_claimed(session, ids, token)
            moment = now or utcnow()
            for finding in findings:
                monitor = monitors.get(finding.gateway.id)
                if monitor is None:
                    logger.warning("health_check_superseded", gateway_id=finding.gateway.id)
                elif finding.reading is not None or incidents.changes_incident(
                    monitor, finding.result.ok
                ):
                    eventful.append(finding)
                else:
                    rows.append(
                        incidents.apply_check(monitor, finding.gateway, finding.result, moment)
                    )
            if rows:
                # Rows only (no ORM objects, no ids read back): one INSERT for the batch.
                await session.execute(insert(HealthCheck), rows)
    except Exception as exc:
        # Rolled back (the database went away): these slots stay claimed and due, and are
        # checked again once the lease runs out. Nothing is lost.
        logger.error("health_checks_not_recorded", checks=len(findings), error=type(exc).__name__)
        return 0
    recorded = len(rows)
    for finding in eventful:
        recorded += await record_one(database, finding, token, now, settings)
    return recorded


async def record_one(
    database: Database, finding: Finding, token: str, now: datetime | None, settings: Settings
) -> bool:
    """Record one claimed check in its own transaction; False if the claim was lost."""
    gateway_id = finding.gateway.id
    try:
        async with database.transaction() as session:
            monitor = await lock_monitor(session, gateway_id, claim_token=token)
            if monitor is None:
                logger.warning("health_check_superseded", gateway_id=gateway_id)
                return False
            moment = now or utcnow()
            await incidents.record_check(
                session, monitor, finding.gateway, finding.result, moment, settings
            )
            if finding.reading is not None:
                await tls.record(
                    session, monitor, finding.gateway, finding.reading, moment, settings
                )
    except Exception as exc:
        # Rolled back (a signal listener failed, the database went away): the slot stays
        # claimed and due, and is checked again once the lease runs out. Nothing is lost.
        logger.error("health_check_not_recorded", gateway_id=gateway_id, error=type(exc).__name__)
        return False
    return True
