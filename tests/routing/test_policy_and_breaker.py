"""The retry policy (API, validation, audit) and the circuit breaker's life cycle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring.models import GatewayMonitor
from paygate.monitoring.system_repository import ensure_monitors
from paygate.routing import breaker
from paygate.routing.decision import decide
from paygate.routing.engine import RoutingInput
from paygate.routing.models import GatewayBreaker
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.routing.helpers import preview, sandbox

POLICY = {
    "max_attempts": 2,
    "retry_decline_codes": ["processing_error", "card_declined"],
    "failover_customer_present": True,
    "failover_api": False,
    "breaker_failures": 3,
    "breaker_cooldown_seconds": 30,
}


async def test_the_retry_policy_has_defaults_and_can_be_changed(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    default = (await client.get("/api/v1/retry-policy", headers=tenant.headers)).json()
    assert default == {
        "max_attempts": 3,
        "retry_decline_codes": ["processing_error"],
        "failover_customer_present": True,
        "failover_api": True,
        "breaker_failures": 5,
        "breaker_cooldown_seconds": 60,
        "updated_at": None,
    }
    saved = await client.put("/api/v1/retry-policy", json=POLICY, headers=tenant.headers)
    assert saved.status_code == 200, saved.text
    assert {k: v for k, v in saved.json().items() if k != "updated_at"} == POLICY
    again = (await client.get("/api/v1/retry-policy", headers=tenant.headers)).json()
    assert again["failover_api"] is False
    assert (await client.get("/api/v1/retry-policy", headers=other_tenant.headers)).json()[
        "failover_api"
    ] is True
    entries = await audit_entries(client, tenant, action="retry_policy.updated")
    assert entries[0]["changes"]["failover_api"] == {"before": True, "after": False}


@pytest.mark.parametrize(
    ("change", "field", "code"),
    [
        ({"retry_decline_codes": ["insufficient_funds"]}, "retry_decline_codes.0", "hard_decline"),
        ({"retry_decline_codes": ["fraud_suspected"]}, "retry_decline_codes.0", "hard_decline"),
        ({"retry_decline_codes": ["whatever"]}, "retry_decline_codes.0", "unknown_code"),
        ({"max_attempts": 0}, "max_attempts", None),
        ({"max_attempts": 9}, "max_attempts", None),
        ({"breaker_failures": 0}, "breaker_failures", None),
        ({"breaker_cooldown_seconds": 1}, "breaker_cooldown_seconds", None),
        ({"failover_api": "no"}, "failover_api", None),
    ],
)
async def test_a_bad_retry_policy_is_refused_and_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, change: dict[str, Any], field: str, code: str | None
) -> None:
    answer = await client.put(
        "/api/v1/retry-policy", json={**POLICY, **change}, headers=tenant.headers
    )
    assert answer.status_code == 422, answer.text
    error = answer.json()["errors"][0]
    assert error["field"] == field
    if code:
        assert error["code"] == code
    assert (await client.get("/api/v1/retry-policy", headers=tenant.headers)).json()[
        "updated_at"
    ] is None


async def _breaker(database: Database, gateway_id: str) -> GatewayBreaker | None:
    async with database.transaction() as session:
        return await session.get(GatewayBreaker, gateway_id)


async def test_the_breaker_opens_skips_half_opens_and_closes(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    a = await sandbox(client, tenant, "A")
    b = await sandbox(client, tenant, "B")
    saved = await client.put("/api/v1/retry-policy", json=POLICY, headers=tenant.headers)
    assert saved.status_code == 200
    payment = RoutingInput(amount=1000, currency="USD", payment_id="pay_breaker")

    async def fail(gateway_id: str) -> str:
        async with database.transaction() as session:
            return await breaker.record_outcome(
                session,
                tenant.company_id,
                gateway_id,
                technical_failure=True,
                detail="connection refused",
            )

    # Two failures: still closed; a success in between resets the count.
    assert await fail(a) == "closed"
    async with database.transaction() as session:
        await breaker.record_outcome(session, tenant.company_id, a, technical_failure=False)
    assert (await _breaker(database, a)).consecutive_failures == 0  # type: ignore[union-attr]
    for expected in ("closed", "closed", "open"):
        assert await fail(a) == expected

    # Open: skipped, with the reason; the payment goes to B.
    routed = await preview(client, tenant)
    assert [g["gateway_id"] for g in routed["gateways"]] == [b]
    assert routed["skipped"][0]["reason"] == "down"
    assert "circuit open after 3 technical failures" in routed["skipped"][0]["detail"]
    # Another company's routing does not care.
    assert (await preview(client, other_tenant))["skipped"] == []

    # After the cool-down, one trial payment goes through (half-open); the others still skip.
    async with database.transaction() as session:
        await session.execute(
            update(GatewayBreaker)
            .where(GatewayBreaker.gateway_id == a)
            .values(opened_at=utcnow() - timedelta(seconds=31))
        )
    async with database.transaction() as session:
        trial = await decide(session, tenant.company_id, payment, claim_probes=True)
    assert trial.gateway_ids == [a, b]
    assert (await _breaker(database, a)).state == "half_open"  # type: ignore[union-attr]
    async with database.transaction() as session:
        others = await decide(session, tenant.company_id, payment, claim_probes=True)
    assert others.gateway_ids == [b]
    assert "trial payment is in progress" in others.skipped[0].detail

    # The trial fails: open again, for another cool-down.
    assert await fail(a) == "open"
    async with database.transaction() as session:
        assert (await decide(session, tenant.company_id, payment)).gateway_ids == [b]

    # Next trial succeeds: closed, and A takes payments again.
    async with database.transaction() as session:
        await session.execute(
            update(GatewayBreaker)
            .where(GatewayBreaker.gateway_id == a)
            .values(opened_at=utcnow() - timedelta(seconds=31))
        )
    async with database.transaction() as session:
        assert (await decide(session, tenant.company_id, payment, claim_probes=True)).gateway_ids[
            0
        ] == a
    async with database.transaction() as session:
        state = await breaker.record_outcome(session, tenant.company_id, a, technical_failure=False)
    assert state == "closed"
    assert (await preview(client, tenant))["skipped"] == []
    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=a)]
    assert actions.count("gateway.breaker_opened") == 2
    assert actions.count("gateway.breaker_closed") == 1


async def test_the_health_monitor_can_mark_a_gateway_down(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    a = await sandbox(client, tenant, "A")
    b = await sandbox(client, tenant, "B")
    since = datetime(2026, 3, 4, 5, 6, tzinfo=UTC)
    async with database.transaction() as session:
        await ensure_monitors(session, since, interval=5, threshold=2)
        await session.execute(
            update(GatewayMonitor)
            .where(GatewayMonitor.gateway_id == a)
            .values(status="down", status_since=since, check_state="down")
        )
    routed = await preview(client, tenant)
    assert [g["gateway_id"] for g in routed["gateways"]] == [b]
    assert routed["skipped"] == [
        {
            "gateway_id": a,
            "name": "A",
            "reason": "down",
            "detail": "down since 2026-03-04 05:06 UTC (health checks)",
        }
    ]
