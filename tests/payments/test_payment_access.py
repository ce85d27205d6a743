"""Who may take payments and refunds: roles and API key scopes."""

from __future__ import annotations

import secrets

import httpx

from tests.conftest import Tenant
from tests.payments.helpers import SUCCESS_CARD, create_invoice, pay, sandbox_gateway


async def api_key(client: httpx.AsyncClient, tenant: Tenant, *scopes: str) -> dict[str, str]:
    created = await client.post(
        "/api/v1/api-keys", json={"name": "billing", "scopes": list(scopes)}, headers=tenant.headers
    )
    assert created.status_code == 201, created.text
    return {"Authorization": f"Bearer {created.json()['key']}"}


async def test_scopes_gate_payments_and_refunds(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    reader = await api_key(client, tenant, "payments:read", "invoices:read")
    writer = await api_key(
        client, tenant, "payments:read", "payments:write", "invoices:write", "invoices:read"
    )
    body = {"payment_method": SUCCESS_CARD}
    refused = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json=body,
        headers={**reader, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert refused.status_code == 403
    assert (await client.post("/api/v1/invoices", json={}, headers=reader)).status_code == 403
    paid = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json=body,
        headers={**writer, "Idempotency-Key": secrets.token_hex(8)},
    )
    assert paid.status_code == 201
    payment_id = paid.json()["id"]
    assert (await client.get(f"/api/v1/payments/{payment_id}", headers=reader)).status_code == 200
    for path in (f"/api/v1/payments/{payment_id}/refunds", f"/api/v1/payments/{payment_id}/sync"):
        response = await client.post(
            path, json={}, headers={**reader, "Idempotency-Key": secrets.token_hex(8)}
        )
        assert response.status_code == 403, path
    entries = (
        await client.get(
            "/api/v1/audit-log", params={"object_id": payment_id}, headers=tenant.headers
        )
    ).json()["data"]
    assert [(e["action"], e["actor_type"]) for e in entries] == [("payment.created", "api_key")]


async def test_payments_list_filters(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    first = await create_invoice(client, tenant)
    second = await create_invoice(client, tenant)
    ok = await pay(client, tenant, first["id"])
    failed = await pay(client, tenant, second["id"], payment_method="4000000000000002")
    listed = (await client.get("/api/v1/payments", headers=tenant.headers)).json()["data"]
    assert [p["id"] for p in listed] == [failed["id"], ok["id"]]
    only_failed = (
        await client.get("/api/v1/payments", params={"status": "failed"}, headers=tenant.headers)
    ).json()["data"]
    assert [p["id"] for p in only_failed] == [failed["id"]]
    by_invoice = (
        await client.get(
            "/api/v1/payments", params={"invoice_id": first["id"]}, headers=tenant.headers
        )
    ).json()["data"]
    assert [p["id"] for p in by_invoice] == [ok["id"]]
    assert (await client.get("/api/v1/payments", headers=other_tenant.headers)).json()["data"] == []
