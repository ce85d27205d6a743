"""API keys for server-to-server calls: shown once, scoped, revocable."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from paygate.accounts.models import ApiKey
from paygate.db import Database
from tests.conftest import Tenant
from tests.gateways.helpers import sandbox_payload


async def test_a_key_is_shown_once_and_stored_as_a_hash(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "Billing server", "scopes": ["gateways:read"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    body = created.json()
    key = body["key"]
    assert key.startswith("pgk_")
    assert body["prefix"] == key[:12]
    listed = (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    assert [k["id"] for k in listed] == [body["id"]]
    assert "key" not in listed[0]
    async with database.transaction() as session:
        stored = (await session.execute(select(ApiKey).where(ApiKey.id == body["id"]))).scalar_one()
    assert key not in (stored.key_hash, stored.prefix)
    assert len(stored.key_hash) == 64


async def test_scopes_are_checked_and_revocation_is_immediate(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    reader = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "reader", "scopes": ["gateways:read"]},
            headers=tenant.headers,
        )
    ).json()
    writer = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "writer", "scopes": ["gateways:read", "gateways:write"]},
            headers=tenant.headers,
        )
    ).json()
    as_reader = {"Authorization": f"Bearer {reader['key']}"}
    as_writer = {"Authorization": f"Bearer {writer['key']}"}

    created = await client.post("/api/v1/gateways", json=sandbox_payload(), headers=as_writer)
    assert created.status_code == 201
    assert (await client.get("/api/v1/gateways", headers=as_reader)).json()[0][
        "id"
    ] == created.json()["id"]
    assert (
        await client.post("/api/v1/gateways", json=sandbox_payload(), headers=as_reader)
    ).status_code == 403
    assert (await client.get("/api/v1/audit-log", headers=as_reader)).status_code == 403
    assert (await client.get("/api/v1/gateways", headers=other_tenant.headers)).json() == []

    entry = (
        await client.get(
            "/api/v1/audit-log", params={"action": "gateway.created"}, headers=tenant.headers
        )
    ).json()["data"][0]
    assert entry["actor_type"] == "api_key"
    assert entry["actor_id"] == writer["id"]

    # Another company cannot revoke it; its owner can, and it stops at once.
    assert (
        await client.delete(f"/api/v1/api-keys/{writer['id']}", headers=other_tenant.headers)
    ).status_code == 404
    assert (
        await client.delete(f"/api/v1/api-keys/{writer['id']}", headers=tenant.headers)
    ).status_code == 204
    assert (await client.get("/api/v1/gateways", headers=as_writer)).status_code == 401


async def test_a_key_cannot_outrank_its_creator(client: httpx.AsyncClient, tenant: Tenant) -> None:
    dev_invite = (
        await client.post(
            "/api/v1/members",
            json={"email": "dev@acme-invoicing.com", "role": "developer"},
            headers=tenant.headers,
        )
    ).json()
    token = dev_invite["invite_url"].rsplit("/", 1)[1]
    dev = (
        await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": tenant.password}
        )
    ).json()
    as_dev = {"Authorization": f"Bearer {dev['access_token']}"}
    refused = await client.post(
        "/api/v1/api-keys", json={"name": "sneaky", "scopes": ["gateways:write"]}, headers=as_dev
    )
    assert refused.status_code == 403
    allowed = await client.post(
        "/api/v1/api-keys", json={"name": "ok", "scopes": ["gateways:read"]}, headers=as_dev
    )
    assert allowed.status_code == 201
    unknown_scope = await client.post(
        "/api/v1/api-keys", json={"name": "x", "scopes": ["root"]}, headers=tenant.headers
    )
    assert unknown_scope.status_code == 422
