"""Gateways and routing rules the routing tests create through the API."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway


async def sandbox(client: httpx.AsyncClient, tenant: Tenant, name: str, **fields: Any) -> str:
    payload = {
        "gateway_type": "sandbox",
        "name": name,
        "supported_currencies": ["USD", "EUR"],
        **fields,
    }
    return str((await create_gateway(client, tenant, payload))["id"])


def priority(*gateway_ids: str) -> dict[str, Any]:
    return {"type": "priority", "gateway_ids": list(gateway_ids)}


async def add_rule(
    client: httpx.AsyncClient,
    tenant: Tenant,
    name: str,
    action: dict[str, Any],
    *,
    expect: int = 201,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/routing-rules",
        json={"name": name, "action": action, **fields},
        headers=tenant.headers,
    )
    assert response.status_code == expect, response.text
    body: dict[str, Any] = response.json()
    return body


async def rule_set(client: httpx.AsyncClient, tenant: Tenant) -> dict[str, Any]:
    response = await client.get("/api/v1/routing-rules", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def preview(client: httpx.AsyncClient, tenant: Tenant, **payment: Any) -> dict[str, Any]:
    payment.setdefault("amount", 1000)
    payment.setdefault("currency", "USD")
    response = await client.post(
        "/api/v1/routing-rules/preview", json=payment, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body
