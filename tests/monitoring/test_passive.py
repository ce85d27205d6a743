"""Passive health: live payments failing for technical reasons, with no scheduled check in
between, make the gateway degraded, open a degradation incident and raise one spike alert."""

from __future__ import annotations

from datetime import timedelta

import httpx

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import alerts, passive
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.mail import Mailbox, body_of
from tests.monitoring.helpers import (
    add_recipient,
    checks_of,
    custom_payload,
    incidents_of,
    monitor_of,
    monitored_gateway,
)
from tests.payments.helpers import create_invoice, pay

FAILED_PAYMENTS = 5


async def test_live_payment_failures_alone_make_the_gateway_degraded(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    settings: Settings,
    custom_gateway_emulator: CustomGatewayEmulator,
    mailbox: Mailbox,
) -> None:
    gateway_id = await monitored_gateway(client, tenant, custom_payload(custom_gateway_emulator))
    await add_recipient(client, tenant, "spikes@acme.example", ["failure_spike"])
    # A declined card is the customer's problem, not the gateway's: it does not count.
    invoice = await create_invoice(client, tenant)
    await pay(
        client, tenant, invoice["id"], gateway_id=gateway_id, payment_method="tok_4000000000000002"
    )
    await passive.evaluate(database, settings)
    assert (await monitor_of(database, gateway_id)).passive_degraded is False

    # The gateway's server errors on live payments.
    custom_gateway_emulator.knobs.fail_status = 503
    for _ in range(FAILED_PAYMENTS):
        invoice = await create_invoice(client, tenant)
        payment = await pay(
            client, tenant, invoice["id"], gateway_id=gateway_id, payment_method="tok_visa"
        )
        assert payment["failure"]["code"] == "outcome_unknown"
    # (Other tests' gateways share the database: judge ours by its own state.)
    await passive.evaluate(database, settings)

    monitor = await monitor_of(database, gateway_id)
    assert monitor.status == "degraded"
    assert monitor.passive_reason is not None
    assert "failed" in monitor.passive_reason
    assert await checks_of(database, gateway_id) == 0  # no scheduled check was involved
    [incident] = await incidents_of(database, gateway_id)
    assert incident.kind == "degradation"
    assert incident.failed_calls >= FAILED_PAYMENTS
    assert {item["source"] for item in incident.evidence} == {"call"}
    assert all(item["http_status"] == 503 for item in incident.evidence)

    health = (await client.get("/api/v1/health/gateways", headers=tenant.headers)).json()
    [mine] = [g for g in health if g["gateway_id"] == gateway_id]
    assert mine["status"] == "degraded"
    assert mine["reason"].startswith("Live traffic is failing")
    assert mine["error_rate_24h"] > 0.5
    assert gateway_id not in {
        g["gateway_id"]
        for g in (await client.get("/api/v1/health/gateways", headers=other_tenant.headers)).json()
    }

    # Judged again a minute later, still failing: the same incident, one alert.
    await passive.evaluate(database, settings, now=utcnow() + timedelta(minutes=1))
    await alerts.send_due_alerts(database, settings)
    await alerts.send_due_alerts(database, settings)
    [mail] = mailbox.wait_for("spikes@acme.example")
    assert mail["Subject"] == "paygate: Custom is failing payments"
    assert "failed" in body_of(mail)
    assert custom_gateway_emulator.api_key not in body_of(mail)

    # Once the window holds no failures any more, the degradation ends.
    custom_gateway_emulator.knobs.reset()
    later = utcnow() + timedelta(minutes=settings.monitoring_passive_window_minutes + 1)
    await passive.evaluate(database, settings, now=later)
    monitor = await monitor_of(database, gateway_id)
    assert monitor.passive_degraded is False
    assert monitor.status == "unknown"  # never checked by the schedule
    [incident] = await incidents_of(database, gateway_id)
    assert incident.ended_at == later
    assert len(mailbox.to("spikes@acme.example")) == 1
