"""A round records its checks in batches: many gateways, some failing, every result stored
and every change alerted exactly once, whichever batch a gateway landed in; a batch the
database refuses is lost as a whole and checked again, never half-written."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import httpx
from sqlalchemy import select, text

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import checks
from paygate.monitoring.models import Alert, HealthCheck, Incident
from paygate.monitoring.signals import GatewayStatusChange
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.monitoring.helpers import (
    checks_of,
    custom_payload,
    monitor_of,
    monitored_gateway,
    schedule_only,
)

MINUTE = timedelta(minutes=1)
GATEWAYS = 9
BATCH = 4  # 9 gateways: batches of 4, 4 and 1 in every round


async def check_states(database: Database, gateway_ids: list[str]) -> dict[str, list[str]]:
    """Each gateway's stored results, oldest first, as the state each one led to."""
    async with database.transaction() as session:
        rows = await session.execute(
            select(HealthCheck.gateway_id, HealthCheck.state)
            .where(HealthCheck.gateway_id.in_(gateway_ids))
            .order_by(HealthCheck.checked_at, HealthCheck.id)
        )
        found: dict[str, list[str]] = {gateway_id: [] for gateway_id in gateway_ids}
        for gateway_id, state in rows:
            found[gateway_id].append(state)
        return found


async def test_a_round_over_many_gateways_stores_every_result_and_alerts_once_per_change(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
    announced: list[tuple[GatewayStatusChange, bool]],
) -> None:
    ids = [
        await monitored_gateway(client, tenant, custom_payload(custom_gateway_emulator, f"B{i}"))
        for i in range(GATEWAYS)
    ]
    t0 = utcnow()
    await schedule_only(database, settings, ids, t0)
    batched = settings.model_copy(update={"monitoring_concurrency": BATCH})
    knobs = custom_gateway_emulator.knobs

    async def round_at(minute: int) -> None:
        report = await checks.run_round(database, keyring, batched, now=t0 + minute * MINUTE)
        assert (report.claimed, report.recorded, report.superseded) == (GATEWAYS, GATEWAYS, 0)

    # Every gateway fails once: pending (degraded) under the threshold of 2, no incident.
    knobs.fail_status = 503
    await round_at(0)
    assert {(await monitor_of(database, i)).status for i in ids} == {"degraded"}
    async with database.transaction() as session:
        assert (
            await session.execute(select(Incident).where(Incident.gateway_id.in_(ids)))
        ).all() == []

    # Four fail again (down: an incident and an alert each), the others succeed (up).
    knobs.fail_status, knobs.fail_times = 503, 4
    await round_at(1)
    statuses = {i: (await monitor_of(database, i)).status for i in ids}
    down = sorted(i for i, status in statuses.items() if status == "down")
    assert len(down) == 4
    assert {statuses[i] for i in ids if i not in down} == {"up"}

    # All fail: the four stay down in the same incidents, the others are pending again.
    knobs.fail_status, knobs.fail_times = 503, None
    await round_at(2)
    # All answer: the four recover (one notice each), the others are up.
    knobs.reset()
    await round_at(3)
    assert {(await monitor_of(database, i)).status for i in ids} == {"up"}

    # Every result of every round is stored, in the state it led to.
    states = await check_states(database, ids)
    for gateway_id in ids:
        expected = (
            ["pending", "down", "down", "up"]
            if gateway_id in down
            else ["pending", "up", "pending", "up"]
        )
        assert states[gateway_id] == expected, gateway_id
        assert await checks_of(database, gateway_id) == 4

    # One outage per gateway that went down, from its first failed check to the recovery.
    async with database.transaction() as session:
        incidents = (
            (await session.execute(select(Incident).where(Incident.gateway_id.in_(ids))))
            .scalars()
            .all()
        )
        alerts = (
            await session.execute(
                select(Alert.gateway_id, Alert.kind).where(Alert.gateway_id.in_(ids))
            )
        ).all()
    assert sorted(i.gateway_id for i in incidents) == down
    for incident in incidents:
        assert (incident.started_at, incident.ended_at) == (t0, t0 + 3 * MINUTE)
        assert incident.failed_checks == 3
    # Exactly one down alert and one recovery alert per incident, and no other.
    assert Counter(alerts) == Counter(
        [(i, "gateway_down") for i in down] + [(i, "gateway_up") for i in down]
    )
    events = Counter((change.gateway_id, change.event) for change, _ in announced)
    assert events == Counter(
        [(i, "gateway.down") for i in down] + [(i, "gateway.up") for i in down]
    )


async def test_a_batch_the_database_refuses_is_checked_again_whole(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    ids = [
        await monitored_gateway(client, tenant, custom_payload(custom_gateway_emulator, f"R{i}"))
        for i in range(3)
    ]
    t0 = utcnow()
    await schedule_only(database, settings, ids, t0)
    # The database refuses one gateway's result: the batch's one INSERT fails.
    async with database.transaction() as session:
        await session.execute(
            text(
                "CREATE FUNCTION refuse_health_check() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN RAISE EXCEPTION 'refused'; END $$"
            )
        )
        await session.execute(
            text(
                "CREATE TRIGGER refuse_health_check BEFORE INSERT ON health_checks FOR EACH ROW"
                f" WHEN (NEW.gateway_id = '{ids[1]}') EXECUTE FUNCTION refuse_health_check()"
            )
        )
    try:
        report = await checks.run_round(database, keyring, settings, now=t0)
    finally:
        async with database.transaction() as session:
            await session.execute(text("DROP TRIGGER refuse_health_check ON health_checks"))
            await session.execute(text("DROP FUNCTION refuse_health_check()"))
    assert (report.claimed, report.recorded) == (3, 0)
    leases = []
    for gateway_id in ids:
        # Nothing of the batch was written, not even the results the database would take.
        assert await checks_of(database, gateway_id) == 0
        monitor = await monitor_of(database, gateway_id)
        assert (monitor.status, monitor.next_check_at) == ("unknown", t0)
        assert monitor.claimed_until is not None
        leases.append(monitor.claimed_until)

    # Once the lease has run out, the next round checks and records all of them, once.
    report = await checks.run_round(
        database, keyring, settings, now=max(leases) + timedelta(seconds=1)
    )
    assert (report.claimed, report.recorded) == (3, 3)
    for gateway_id in ids:
        assert await checks_of(database, gateway_id) == 1
        assert (await monitor_of(database, gateway_id)).status == "up"
