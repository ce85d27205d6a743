"""Monitored gateways for the monitoring tests, and a schedule the tests replay by the minute."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from paygate.db import Database
from paygate.monitoring.models import GatewayMonitor, HealthCheck, Incident
from paygate.monitoring.system_repository import ensure_monitors
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.gateways.helpers import create_gateway

FAR = timedelta(days=3650)


def custom_payload(emulator: CustomGatewayEmulator, name: str = "Custom") -> dict[str, Any]:
    return {
        "name": name,
        "gateway_type": "custom",
        "configuration": {"base_url": emulator.base_url, "api_key": emulator.api_key},
    }


async def monitored_gateway(
    client: httpx.AsyncClient,
    tenant: Tenant,
    payload: dict[str, Any],
    *,
    interval: int = 1,
    threshold: int = 2,
) -> str:
    gateway = await create_gateway(client, tenant, payload)
    response = await client.patch(
        f"/api/v1/gateways/{gateway['id']}/monitoring",
        json={"interval_minutes": interval, "failure_threshold": threshold},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    return str(gateway["id"])


async def schedule_only(
    database: Database, settings: Settings, gateway_ids: list[str], first_slot: datetime
) -> None:
    """Make these gateways' next slot `first_slot` and push every other gateway in the test
    database (other tests' tenants) out of the way, so a round checks only ours."""
    async with database.transaction() as session:
        await ensure_monitors(session, first_slot, 5, 2)
        await session.execute(
            text(
                "UPDATE gateway_monitors SET next_check_at = :far"
                " WHERE NOT (gateway_id = ANY(CAST(:ids AS varchar[])))"
            ),
            {"far": first_slot + FAR, "ids": gateway_ids},
        )
        await session.execute(
            text(
                "UPDATE gateway_monitors SET next_check_at = :at, claimed_until = NULL,"
                " claim_token = NULL WHERE gateway_id = ANY(CAST(:ids AS varchar[]))"
            ),
            {"at": first_slot, "ids": gateway_ids},
        )


async def monitor_of(database: Database, gateway_id: str) -> GatewayMonitor:
    async with database.transaction() as session:
        monitor = await session.get(GatewayMonitor, gateway_id)
        assert monitor is not None
        return monitor


async def checks_of(database: Database, gateway_id: str) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).where(HealthCheck.gateway_id == gateway_id)
        return int((await session.execute(statement)).scalar_one())


async def incidents_of(database: Database, gateway_id: str) -> list[Incident]:
    async with database.transaction() as session:
        statement = select(Incident).where(Incident.gateway_id == gateway_id).order_by(Incident.id)
        return list((await session.execute(statement)).scalars())


async def add_recipient(
    client: httpx.AsyncClient, tenant: Tenant, email: str, kinds: list[str] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"email": email}
    if kinds is not None:
        body["kinds"] = kinds
    response = await client.post("/api/v1/alert-recipients", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    result: dict[str, Any] = response.json()
    return result
