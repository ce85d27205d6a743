"""Gateway payloads the tests send, one per type, aimed at the local emulators."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tenant


def stripe_payload(
    base_url: str, *, secret_key: str = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc4242"
) -> dict[str, Any]:
    return {
        "name": "Stripe US",
        "gateway_type": "stripe",
        "environment": "test",
        "configuration": {
            "secret_key": secret_key,
            "publishable_key": "pk_test_TYooMQauvdEDq54NiTphI7jx",
            "webhook_secret": "whsec_" + "a" * 32,
            "api_base_url": base_url,
        },
        "supported_currencies": ["USD", "EUR"],
        "min_amount": 50,
        "max_amount": 1_000_000,
    }


def sandbox_payload(name: str = "Sandbox") -> dict[str, Any]:
    return {"name": name, "gateway_type": "sandbox", "supported_currencies": ["USD"]}


async def create_gateway(
    client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post("/api/v1/gateways", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def audit_entries(
    client: httpx.AsyncClient, tenant: Tenant, **filters: str
) -> list[dict[str, Any]]:
    response = await client.get("/api/v1/audit-log", params=filters, headers=tenant.headers)
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data
