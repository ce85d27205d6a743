"""Every change to who may do what (roles, lockouts, keys, embedding) leaves an audit entry."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant


async def test_security_setting_changes_are_audited(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    invitation = (
        await client.post(
            "/api/v1/members",
            json={"email": "ops@acme-invoicing.com", "role": "viewer"},
            headers=tenant.headers,
        )
    ).json()
    await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["invite_url"].rsplit("/", 1)[1], "password": tenant.password},
    )
    members = (await client.get("/api/v1/members", headers=tenant.headers)).json()["members"]
    ops = next(m for m in members if m["email"] == "ops@acme-invoicing.com")
    steps = [
        ("PATCH", f"/api/v1/members/{ops['id']}", {"role": "developer"}),
        ("POST", f"/api/v1/members/{ops['id']}/unlock", None),
        ("PUT", "/api/v1/company/embed-origins", {"origins": ["https://shop.example.com"]}),
    ]
    for method, url, body in steps:
        response = await client.request(method, url, json=body, headers=tenant.headers)
        assert response.status_code == 200, (url, response.text)
    key = (
        await client.post(
            "/api/v1/api-keys",
            json={"name": "Audited", "scopes": ["gateways:read"]},
            headers=tenant.headers,
        )
    ).json()
    rotated = (
        await client.post(f"/api/v1/api-keys/{key['id']}/rotate", headers=tenant.headers)
    ).json()
    await client.delete(f"/api/v1/api-keys/{rotated['id']}", headers=tenant.headers)

    log = (
        await client.get("/api/v1/audit-log", params={"limit": 100}, headers=tenant.headers)
    ).json()["data"]
    done = {(entry["action"], entry["object_id"]) for entry in log}
    assert {
        ("member.role_changed", ops["id"]),
        ("member.unlocked", ops["id"]),
        ("company.embed_origins_changed", tenant.company_id),
        ("api_key.created", key["id"]),
        ("api_key.rotated", key["id"]),
        ("api_key.created", rotated["id"]),
        ("api_key.revoked", rotated["id"]),
    } <= done
    assert all(
        entry["actor_id"] == tenant.user_id for entry in log if entry["action"] != "member.joined"
    )
    theirs = (await client.get("/api/v1/audit-log", headers=other_tenant.headers)).json()["data"]
    assert {entry["action"] for entry in theirs} == {"account.registered"}
