"""Invoices and payments the tests create through the API."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway

SUCCESS_CARD = "4242424242424242"


async def sandbox_gateway(
    client: httpx.AsyncClient, tenant: Tenant, **fields: Any
) -> dict[str, Any]:
    payload = {
        "gateway_type": "sandbox",
        "name": "Sandbox",
        "supported_currencies": ["USD", "JPY"],
        **fields,
    }
    return await create_gateway(client, tenant, payload)


async def custom(
    client: httpx.AsyncClient, tenant: Tenant, name: str, base_url: str, api_key: str
) -> dict[str, Any]:
    """A custom gateway (test environment) at `base_url`, taking USD."""
    payload = {
        "name": name,
        "gateway_type": "custom",
        "environment": "test",
        "configuration": {"base_url": base_url, "api_key": api_key},
        "supported_currencies": ["USD"],
    }
    return await create_gateway(client, tenant, payload)


async def create_invoice(
    client: httpx.AsyncClient,
    tenant: Tenant,
    *,
    amount: int = 12_500,
    currency: str = "USD",
    **fields: Any,
) -> dict[str, Any]:
    payload = {
        "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
        "currency": currency,
        "line_items": [{"description": "Consulting", "quantity": 1, "unit_amount": amount}],
        **fields,
    }
    response = await client.post("/api/v1/invoices", json=payload, headers=tenant.headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def pay(
    client: httpx.AsyncClient,
    tenant: Tenant,
    invoice_id: str,
    *,
    key: str | None = None,
    expect: int = 201,
    **body: Any,
) -> dict[str, Any]:
    body.setdefault("payment_method", SUCCESS_CARD)
    response = await client.post(
        f"/api/v1/invoices/{invoice_id}/payments",
        json=body,
        headers={**tenant.headers, "Idempotency-Key": key or secrets.token_hex(8)},
    )
    assert response.status_code == expect, response.text
    result: dict[str, Any] = response.json()
    return result


async def get_invoice(client: httpx.AsyncClient, tenant: Tenant, invoice_id: str) -> dict[str, Any]:
    body: dict[str, Any] = (
        await client.get(f"/api/v1/invoices/{invoice_id}", headers=tenant.headers)
    ).json()
    return body
