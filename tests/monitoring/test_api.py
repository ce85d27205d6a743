"""The health API: figures computed by hand for a seeded history, heartbeats, rollups,
monitor settings and alert recipients (audited), tenancy and bad input."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import rollups
from paygate.monitoring.models import HealthCheck, HealthCheckHour
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, sandbox_payload
from tests.monitoring.helpers import add_recipient, monitored_gateway


def checks(
    gateway_id: str, company_id: str, end: datetime, count: int, failed: int, step: timedelta
) -> list[HealthCheck]:
    """`count` checks one `step` apart ending at `end`, the first `failed` of them failed."""
    return [
        HealthCheck(
            gateway_id=gateway_id,
            company_id=company_id,
            checked_at=end - i * step,
            ok=i >= failed,
            latency_ms=100 + i % 50,
            state="up" if i >= failed else "down",
            error_code=None if i >= failed else "unavailable",
            message=None if i >= failed else "The custom gateway answered with HTTP 503.",
        )
        for i in range(count)
    ]


async def health(
    client: httpx.AsyncClient, tenant: Tenant, gateway_id: str, **params: Any
) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/gateways/{gateway_id}/health", params=params, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_uptime_of_a_seeded_history_matches_the_hand_count(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, settings: Settings
) -> None:
    gateway_id = await monitored_gateway(client, tenant, sandbox_payload("Seeded"))
    now = utcnow()
    minute = timedelta(minutes=1)
    async with database.transaction() as session:
        # Last 24 hours: 100 checks, 3 failed.
        session.add_all(checks(gateway_id, tenant.company_id, now - minute, 100, 3, 10 * minute))
        # Days 2 to 6: 500 checks, 10 failed.
        session.add_all(
            checks(gateway_id, tenant.company_id, now - timedelta(days=2), 500, 10, 10 * minute)
        )
        # Days 8 to 29, already rolled up: 20 hours of 12 checks, 1 failed in each.
        for day in range(20):
            hour = (now - timedelta(days=8 + day)).replace(minute=0, second=0, microsecond=0)
            session.add(
                HealthCheckHour(
                    gateway_id=gateway_id,
                    company_id=tenant.company_id,
                    hour=hour,
                    checks=12,
                    failures=1,
                    latency_p50=120,
                    latency_p95=300,
                    latency_max=400,
                )
            )
        # Older than 30 days: counted nowhere.
        session.add(
            HealthCheckHour(
                gateway_id=gateway_id,
                company_id=tenant.company_id,
                hour=(now - timedelta(days=40)).replace(minute=0, second=0, microsecond=0),
                checks=12,
                failures=12,
            )
        )
    # By hand: 24 h 97 of 100; 7 d 587 of 600; 30 d 807 of 840.
    expected = {
        "last_24h": round(100 * 97 / 100, 2),
        "last_7d": round(100 * 587 / 600, 2),
        "last_30d": round(100 * 807 / 840, 2),
    }
    body = await health(client, tenant, gateway_id)
    assert body["uptime"] == expected
    listed = (await client.get("/api/v1/health/gateways", headers=tenant.headers)).json()
    [summary] = [g for g in listed if g["gateway_id"] == gateway_id]
    assert summary["uptime"] == expected

    # The heartbeat bar: the last 90 checks, oldest first, the newest 3 failed.
    beats = body["heartbeats"]
    assert len(beats) == 90
    assert [b["ok"] for b in beats[-4:]] == [True, False, False, False]
    assert beats[-1]["state"] == "down"
    assert beats[-1]["message"] == "The custom gateway answered with HTTP 503."
    assert beats[0]["at"] < beats[-1]["at"]

    # Hourly figures over 24 hours: every check counted once, latency percentiles given.
    hours = body["hours"]
    assert sum(h["checks"] for h in hours) == 100
    assert sum(h["check_failures"] for h in hours) == 3
    assert all(h["latency_p50_ms"] <= h["latency_p95_ms"] for h in hours)
    week = await health(client, tenant, gateway_id, hours=168)
    assert sum(h["checks"] for h in week["hours"]) == 600

    # Rolled up after the retention: the raw rows go, the hours come, the figures stay.
    old_end = now - timedelta(days=settings.monitoring_raw_retention_days, hours=3)
    async with database.transaction() as session:
        session.add_all(checks(gateway_id, tenant.company_id, old_end, 24, 6, 5 * minute))
    before = (await health(client, tenant, gateway_id))["uptime"]
    assert before["last_30d"] == round(100 * (807 + 18) / 864, 2)
    await rollups.roll_up(database, settings)
    await rollups.roll_up(database, settings)  # a second run finds nothing to count twice
    async with database.transaction() as session:
        raw = await session.execute(
            select(func.count()).where(
                HealthCheck.gateway_id == gateway_id,
                HealthCheck.checked_at < now - timedelta(days=7),
            )
        )
        assert raw.scalar_one() == 0
        rolled = (
            await session.execute(
                select(func.sum(HealthCheckHour.checks), func.sum(HealthCheckHour.failures)).where(
                    HealthCheckHour.gateway_id == gateway_id,
                    HealthCheckHour.hour > now - timedelta(days=8),
                )
            )
        ).one()
        assert tuple(rolled) == (24, 6)
    assert (await health(client, tenant, gateway_id))["uptime"] == before


async def test_monitor_settings_and_recipients_are_audited(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    gateway_id = await monitored_gateway(client, tenant, sandbox_payload(), interval=3, threshold=4)
    body = await health(client, tenant, gateway_id)
    assert body["monitor"] == {"interval_minutes": 3, "failure_threshold": 4}
    [entry] = await audit_entries(client, tenant, action="gateway.monitoring_updated")
    assert entry["object_id"] == gateway_id
    assert entry["changes"]["interval_minutes"] == {"before": 5, "after": 3}

    added = await add_recipient(client, tenant, "Ops@Acme.example", ["gateway_down", "gateway_up"])
    assert added["email"] == "ops@acme.example"
    duplicate = await client.post(
        "/api/v1/alert-recipients", json={"email": "ops@acme.example"}, headers=tenant.headers
    )
    assert duplicate.status_code == 409
    changed = await client.patch(
        f"/api/v1/alert-recipients/{added['id']}",
        json={"kinds": ["tls_expiry", "gateway_down", "tls_expiry"]},
        headers=tenant.headers,
    )
    assert changed.json()["kinds"] == ["gateway_down", "tls_expiry"]
    everything = await add_recipient(client, tenant, "cto@acme.example")
    assert everything["kinds"] == ["gateway_down", "gateway_up", "failure_spike", "tls_expiry"]
    listed = (await client.get("/api/v1/alert-recipients", headers=tenant.headers)).json()
    assert [r["email"] for r in listed] == ["cto@acme.example", "ops@acme.example"]
    removed = await client.delete(f"/api/v1/alert-recipients/{added['id']}", headers=tenant.headers)
    assert removed.json() == {"id": added["id"], "deleted": True}
    actions = [
        e["action"] for e in await audit_entries(client, tenant, object_type="alert_recipient")
    ]
    assert actions == [
        "alert_recipient.removed",
        "alert_recipient.added",
        "alert_recipient.updated",
        "alert_recipient.added",
    ]


async def test_another_company_finds_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    gateway_id = await monitored_gateway(client, tenant, sandbox_payload())
    recipient = await add_recipient(client, tenant, "mine@acme.example")
    theirs = other_tenant.headers
    for method, path, body in (
        ("GET", f"/api/v1/gateways/{gateway_id}/health", None),
        ("PATCH", f"/api/v1/gateways/{gateway_id}/monitoring", {"interval_minutes": 1}),
        ("PATCH", f"/api/v1/alert-recipients/{recipient['id']}", {"kinds": []}),
        ("DELETE", f"/api/v1/alert-recipients/{recipient['id']}", None),
        ("GET", "/api/v1/incidents/inc_01M96A0000000000000000000", None),
    ):
        response = await client.request(method, path, json=body, headers=theirs)
        assert response.status_code == 404, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/alert-recipients", headers=theirs)).json() == []
    listed = (await client.get("/api/v1/health/gateways", headers=theirs)).json()
    assert gateway_id not in {g["gateway_id"] for g in listed}
    incidents = await client.get(
        "/api/v1/incidents", params={"gateway_id": gateway_id}, headers=theirs
    )
    assert incidents.json()["data"] == []
    # Nothing changed for the owner.
    assert (await health(client, tenant, gateway_id))["monitor"]["interval_minutes"] == 1
    assert len((await client.get("/api/v1/alert-recipients", headers=tenant.headers)).json()) == 1


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PATCH", "/api/v1/gateways/{gw}/monitoring", {"interval_minutes": 0}),
        ("PATCH", "/api/v1/gateways/{gw}/monitoring", {"interval_minutes": 61}),
        ("PATCH", "/api/v1/gateways/{gw}/monitoring", {"failure_threshold": 11}),
        ("PATCH", "/api/v1/gateways/{gw}/monitoring", {"interval_minutes": "5"}),
        ("PATCH", "/api/v1/gateways/{gw}/monitoring", {"interval": 5}),
        ("POST", "/api/v1/alert-recipients", {"email": "not an address"}),
        ("POST", "/api/v1/alert-recipients", {"email": "a@b.example", "kinds": ["sms"]}),
        ("POST", "/api/v1/alert-recipients", {"email": "a@b.example", "extra": 1}),
        ("GET", "/api/v1/incidents?kind=meltdown", None),
        ("GET", "/api/v1/incidents?open=perhaps", None),
        ("GET", "/api/v1/gateways/{gw}/health?hours=0", None),
        ("GET", "/api/v1/gateways/{gw}/health?hours=169", None),
    ],
)
async def test_bad_input_is_a_422_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, method: str, path: str, body: Any
) -> None:
    gateway_id = await monitored_gateway(client, tenant, sandbox_payload(), interval=7)
    response = await client.request(
        method, path.format(gw=gateway_id), json=body, headers=tenant.headers
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert (await health(client, tenant, gateway_id))["monitor"] == {
        "interval_minutes": 7,
        "failure_threshold": 2,
    }
    assert (await client.get("/api/v1/alert-recipients", headers=tenant.headers)).json() == []


async def test_incidents_list_filters_and_pages(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    from paygate.kit.ids import new_id
    from paygate.monitoring.models import Incident

    gateway_id = await monitored_gateway(client, tenant, sandbox_payload())
    now = utcnow()
    async with database.transaction() as session:
        for index in range(3):
            session.add(
                Incident(
                    id=new_id("inc"),
                    company_id=tenant.company_id,
                    gateway_id=gateway_id,
                    kind="outage",
                    started_at=now - timedelta(hours=3 - index),
                    ended_at=None if index == 2 else now - timedelta(hours=2 - index),
                    cause="The custom gateway answered with HTTP 503.",
                    failed_checks=2,
                    failed_calls=0,
                    evidence=[{"source": "check", "at": now.isoformat(), "message": "503"}],
                )
            )
    page = (
        await client.get(
            "/api/v1/incidents",
            params={"gateway_id": gateway_id, "limit": 2},
            headers=tenant.headers,
        )
    ).json()
    assert len(page["data"]) == 2
    assert page["has_more"] is True
    assert page["data"][0]["ended_at"] is None
    assert page["data"][1]["duration_seconds"] == 3600
    rest = (
        await client.get(
            "/api/v1/incidents",
            params={"gateway_id": gateway_id, "cursor": page["next_cursor"]},
            headers=tenant.headers,
        )
    ).json()
    assert len(rest["data"]) == 1
    open_only = (
        await client.get(
            "/api/v1/incidents",
            params={"gateway_id": gateway_id, "open": "true"},
            headers=tenant.headers,
        )
    ).json()
    assert [i["id"] for i in open_only["data"]] == [page["data"][0]["id"]]
    one = await client.get(f"/api/v1/incidents/{page['data'][0]['id']}", headers=tenant.headers)
    assert one.json()["evidence"][0]["source"] == "check"
