"""Scheduled checks against the custom gateway emulator: down after the configured failed
checks, up after one success, one down and one recovery mail per incident (real SMTP), the
signal for outbound webhooks sent inside the transaction."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import alerts, checks
from paygate.monitoring.signals import GatewayStatusChange, gateway_status_changed
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.mail import Mailbox, body_of
from tests.gateways.helpers import audit_entries
from tests.monitoring.helpers import (
    add_recipient,
    custom_payload,
    incidents_of,
    monitor_of,
    monitored_gateway,
    schedule_only,
)

MINUTE = timedelta(minutes=1)


async def two_workers_send(database: Database, settings: Settings) -> None:
    """Two workers sweep the alert outbox at the same moment."""
    second = Database(database.url)
    try:
        await asyncio.gather(
            alerts.send_due_alerts(database, settings), alerts.send_due_alerts(second, settings)
        )
    finally:
        await second.dispose()


async def test_failing_gateway_goes_down_after_the_threshold_and_recovers(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
    mailbox: Mailbox,
    announced: list[tuple[GatewayStatusChange, bool]],
) -> None:
    gateway_id = await monitored_gateway(
        client, tenant, custom_payload(custom_gateway_emulator), threshold=3
    )
    await add_recipient(client, tenant, "oncall@acme.example")
    t0 = utcnow()
    await schedule_only(database, settings, [gateway_id], t0)

    # Healthy first.
    report = await checks.run_round(database, keyring, settings, now=t0)
    assert (report.claimed, report.recorded) == (1, 1)
    assert (await monitor_of(database, gateway_id)).status == "up"

    # The gateway starts answering 503: pending (degraded) twice, down at the third.
    custom_gateway_emulator.knobs.fail_status = 503
    statuses = []
    for minute in (1, 2, 3):
        await checks.run_round(database, keyring, settings, now=t0 + minute * MINUTE)
        statuses.append((await monitor_of(database, gateway_id)).status)
    assert statuses == ["degraded", "degraded", "down"]
    [incident] = await incidents_of(database, gateway_id)
    assert incident.kind == "outage"
    assert incident.ended_at is None
    # It began at the first failed check, with that check's error as its cause.
    assert incident.started_at == t0 + MINUTE
    assert incident.failed_checks == 3
    assert len(incident.evidence) == 3
    assert incident.cause == "The custom gateway answered with HTTP 503."

    # More failed checks: the same incident, and still one down alert.
    for minute in (4, 5):
        await checks.run_round(database, keyring, settings, now=t0 + minute * MINUTE)
    await two_workers_send(database, settings)
    await two_workers_send(database, settings)
    down = mailbox.wait_for("oncall@acme.example")
    assert len(down) == 1
    assert down[0]["Subject"] == "paygate: Custom is down"
    assert custom_gateway_emulator.api_key not in body_of(down[0])
    [incident] = await incidents_of(database, gateway_id)
    assert incident.failed_checks == 5

    # One success: up, the incident closed, one recovery notice with the duration.
    custom_gateway_emulator.knobs.reset()
    await checks.run_round(database, keyring, settings, now=t0 + 6 * MINUTE)
    monitor = await monitor_of(database, gateway_id)
    assert (monitor.status, monitor.consecutive_failures) == ("up", 0)
    [incident] = await incidents_of(database, gateway_id)
    assert incident.ended_at == t0 + 6 * MINUTE
    assert incident.resolution == "recovered"
    await two_workers_send(database, settings)
    await checks.run_round(database, keyring, settings, now=t0 + 7 * MINUTE)
    await two_workers_send(database, settings)
    mails = mailbox.wait_for("oncall@acme.example", count=2)
    assert [m["Subject"] for m in mails] == [
        "paygate: Custom is down",
        "paygate: Custom is back up after 5 min",
    ]
    assert "The outage lasted 5 min" in body_of(mails[1])

    # Announced for outbound webhooks: down once, up once, inside the transaction.
    events = [(c.event, c.from_status, c.to_status, in_tx) for c, in_tx in announced]
    assert events == [
        ("gateway.down", "degraded", "down", True),
        ("gateway.up", "down", "up", True),
    ]
    assert announced[1][0].duration_seconds == 300
    assert {c.gateway_id for c, _ in announced} == {gateway_id}

    # Each alert is audited; the other company sees none of it.
    sent = await audit_entries(client, tenant, action="monitoring.alert_sent")
    assert [e["object_id"] for e in sent] == [gateway_id, gateway_id]
    assert await audit_entries(client, other_tenant, action="monitoring.alert_sent") == []
    response = await client.get(f"/api/v1/gateways/{gateway_id}/health", headers=tenant.headers)
    assert response.status_code == 200
    assert [i["id"] for i in response.json()["incidents"]] == [incident.id]


async def test_a_slow_gateway_times_out_and_goes_down(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
    mailbox: Mailbox,
) -> None:
    gateway_id = await monitored_gateway(client, tenant, custom_payload(custom_gateway_emulator))
    await add_recipient(client, tenant, "slow@acme.example", ["gateway_down"])
    t0 = utcnow()
    await schedule_only(database, settings, [gateway_id], t0)
    custom_gateway_emulator.knobs.delay_seconds = 5  # the test settings time out after 2 s
    await checks.run_round(database, keyring, settings, now=t0)
    await checks.run_round(database, keyring, settings, now=t0 + MINUTE)
    monitor = await monitor_of(database, gateway_id)
    assert monitor.status == "down"
    assert monitor.last_error_code == "timeout"
    assert monitor.last_message == "The gateway did not answer within 2 s."
    await alerts.send_due_alerts(database, settings)
    [mail] = mailbox.wait_for("slow@acme.example")
    assert "did not answer within 2 s" in body_of(mail)


async def test_a_disabled_gateway_is_paused_and_its_incident_ends_without_a_notice(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
    mailbox: Mailbox,
) -> None:
    gateway_id = await monitored_gateway(
        client, tenant, custom_payload(custom_gateway_emulator), threshold=1
    )
    await add_recipient(client, tenant, "pause@acme.example")
    t0 = utcnow()
    await schedule_only(database, settings, [gateway_id], t0)
    custom_gateway_emulator.knobs.fail_status = 500
    await checks.run_round(database, keyring, settings, now=t0)
    assert (await monitor_of(database, gateway_id)).status == "down"

    disabled = await client.post(f"/api/v1/gateways/{gateway_id}/disable", headers=tenant.headers)
    assert disabled.status_code == 200
    report = await checks.run_round(database, keyring, settings, now=t0 + 5 * MINUTE)
    assert report.claimed == 0
    assert (await monitor_of(database, gateway_id)).status == "paused"
    [incident] = await incidents_of(database, gateway_id)
    assert incident.resolution == "paused"
    health = (
        await client.get(f"/api/v1/gateways/{gateway_id}/health", headers=tenant.headers)
    ).json()
    assert health["status"] == "paused"

    # Enabled again: unknown, and checked at once.
    custom_gateway_emulator.knobs.reset()
    await client.post(f"/api/v1/gateways/{gateway_id}/enable", headers=tenant.headers)
    report = await checks.run_round(database, keyring, settings, now=t0 + 6 * MINUTE)
    assert report.recorded == 1
    assert (await monitor_of(database, gateway_id)).status == "up"
    await alerts.send_due_alerts(database, settings)
    subjects = [m["Subject"] for m in mailbox.wait_for("pause@acme.example")]
    assert subjects == ["paygate: Custom is down"]  # no recovery notice after a pause


async def test_a_failing_listener_rolls_the_check_back_and_it_is_checked_again(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    """A change that cannot be announced is not made; the check is not lost either."""
    gateway_id = await monitored_gateway(
        client, tenant, custom_payload(custom_gateway_emulator), threshold=1
    )
    t0 = utcnow()
    await schedule_only(database, settings, [gateway_id], t0)
    custom_gateway_emulator.knobs.fail_status = 503

    async def broken(session: AsyncSession, change: GatewayStatusChange) -> None:
        raise RuntimeError("the outbound webhook table is gone")

    gateway_status_changed.connect(broken)
    try:
        report = await checks.run_round(database, keyring, settings, now=t0)
    finally:
        gateway_status_changed.disconnect(broken)
    assert (report.claimed, report.recorded) == (1, 0)
    assert await incidents_of(database, gateway_id) == []
    monitor = await monitor_of(database, gateway_id)
    assert monitor.status == "unknown"
    assert monitor.claimed_until is not None

    report = await checks.run_round(
        database, keyring, settings, now=monitor.claimed_until + timedelta(seconds=1)
    )
    assert report.recorded == 1
    assert (await monitor_of(database, gateway_id)).status == "down"
    assert len(await incidents_of(database, gateway_id)) == 1
