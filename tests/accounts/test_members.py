"""Owners invite members, change their roles and remove them; roles decide what each may do."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import STRONG_PASSWORD, Tenant
from tests.gateways.helpers import sandbox_payload


async def invite_and_join(
    client: httpx.AsyncClient, owner: Tenant, email: str, role: str
) -> dict[str, Any]:
    invited = await client.post(
        "/api/v1/members", json={"email": email, "role": role}, headers=owner.headers
    )
    assert invited.status_code == 201, invited.text
    body = invited.json()
    assert body["invite_url"].startswith("http")
    token = body["invite_url"].rsplit("/", 1)[1]
    joined = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
    )
    assert joined.status_code == 200, joined.text
    tokens: dict[str, Any] = joined.json()
    tokens["headers"] = {"Authorization": f"Bearer {tokens['access_token']}"}
    return tokens


async def test_roles_decide_what_a_member_may_do(client: httpx.AsyncClient, tenant: Tenant) -> None:
    viewer = await invite_and_join(client, tenant, "viewer@acme-invoicing.com", "viewer")
    admin = await invite_and_join(client, tenant, "admin@acme-invoicing.com", "admin")
    developer = await invite_and_join(client, tenant, "dev@acme-invoicing.com", "developer")

    assert (await client.get("/api/v1/gateways", headers=viewer["headers"])).status_code == 200
    refused = await client.post(
        "/api/v1/gateways", json=sandbox_payload(), headers=viewer["headers"]
    )
    assert refused.status_code == 403
    assert refused.json()["detail"] == "This needs the gateways:write permission."
    assert (
        await client.post("/api/v1/gateways", json=sandbox_payload(), headers=developer["headers"])
    ).status_code == 403
    assert (
        await client.post("/api/v1/gateways", json=sandbox_payload(), headers=admin["headers"])
    ).status_code == 201
    # Only owners manage members.
    assert (
        await client.post(
            "/api/v1/members",
            json={"email": "x@acme-invoicing.com", "role": "viewer"},
            headers=admin["headers"],
        )
    ).status_code == 403
    assert (await client.get("/api/v1/gateways", headers=tenant.headers)).json()[0][
        "name"
    ] == "Sandbox"


async def test_role_change_and_removal_take_effect_at_once(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    member = await invite_and_join(client, tenant, "ops@acme-invoicing.com", "admin")
    listing = (await client.get("/api/v1/members", headers=tenant.headers)).json()
    membership = next(m for m in listing["members"] if m["email"] == "ops@acme-invoicing.com")

    # Another company cannot touch it.
    assert (
        await client.patch(
            f"/api/v1/members/{membership['id']}",
            json={"role": "viewer"},
            headers=other_tenant.headers,
        )
    ).status_code == 404

    demoted = await client.patch(
        f"/api/v1/members/{membership['id']}", json={"role": "viewer"}, headers=tenant.headers
    )
    assert demoted.json()["role"] == "viewer"
    # The demotion ends their sessions: tokens issued under the old role are refused...
    assert (await client.get("/api/v1/gateways", headers=member["headers"])).status_code == 401
    # ...and signing in again gives the new role's rights.
    signed_in = await client.post(
        "/api/v1/auth/login",
        json={
            "email": "ops@acme-invoicing.com",
            "password": STRONG_PASSWORD,
            "company_id": tenant.company_id,
        },
    )
    assert signed_in.status_code == 200, signed_in.text
    member["headers"] = {"Authorization": f"Bearer {signed_in.json()['access_token']}"}
    member["refresh_token"] = signed_in.json()["refresh_token"]
    assert (
        await client.post("/api/v1/gateways", json=sandbox_payload(), headers=member["headers"])
    ).status_code == 403

    assert (
        await client.delete(f"/api/v1/members/{membership['id']}", headers=tenant.headers)
    ).status_code == 204
    assert (await client.get("/api/v1/gateways", headers=member["headers"])).status_code == 401
    assert (
        await client.post("/api/v1/auth/refresh", json={"refresh_token": member["refresh_token"]})
    ).status_code == 401

    actions = [
        e["action"]
        for e in (
            await client.get(
                "/api/v1/audit-log", params={"object_id": membership["id"]}, headers=tenant.headers
            )
        ).json()["data"]
    ]
    assert actions == ["member.removed", "member.role_changed"]


async def test_the_last_owner_stays(client: httpx.AsyncClient, tenant: Tenant) -> None:
    own = next(
        m for m in (await client.get("/api/v1/members", headers=tenant.headers)).json()["members"]
    )
    demote = await client.patch(
        f"/api/v1/members/{own['id']}", json={"role": "admin"}, headers=tenant.headers
    )
    assert demote.status_code == 409
    assert (
        await client.delete(f"/api/v1/members/{own['id']}", headers=tenant.headers)
    ).status_code == 409


async def test_invitations_are_single_use_and_revocable(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    invited = (
        await client.post(
            "/api/v1/members",
            json={"email": "one@acme-invoicing.com", "role": "viewer"},
            headers=tenant.headers,
        )
    ).json()
    token = invited["invite_url"].rsplit("/", 1)[1]
    pending = (await client.get("/api/v1/members", headers=tenant.headers)).json()["invitations"]
    assert [i["email"] for i in pending] == ["one@acme-invoicing.com"]
    assert all(i["invite_url"] is None for i in pending)  # the link is shown once
    assert (
        await client.delete(f"/api/v1/invitations/{invited['id']}", headers=tenant.headers)
    ).status_code == 204
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
    )
    assert accepted.status_code == 404

    again = (
        await client.post(
            "/api/v1/members",
            json={"email": "one@acme-invoicing.com", "role": "viewer"},
            headers=tenant.headers,
        )
    ).json()
    token = again["invite_url"].rsplit("/", 1)[1]
    assert (
        await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
        )
    ).status_code == 200
    assert (
        await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
        )
    ).status_code == 404
    duplicate = await client.post(
        "/api/v1/members",
        json={"email": "one@acme-invoicing.com", "role": "admin"},
        headers=tenant.headers,
    )
    assert duplicate.status_code == 409


def test_every_permission_is_described_and_held_by_owners() -> None:
    from paygate.accounts.permissions import (
        PERMISSION_DESCRIPTIONS,
        ROLE_PERMISSIONS,
        Permission,
        Role,
    )

    assert set(PERMISSION_DESCRIPTIONS) == set(Permission)
    assert ROLE_PERMISSIONS[Role.OWNER] == frozenset(Permission)


async def test_a_member_of_two_companies_is_managed_in_each_apart(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    email = "contractor@example.com"
    in_acme = await invite_and_join(client, tenant, email, "developer")
    in_globex = await invite_and_join(client, other_tenant, email, "developer")

    def membership_of(members: dict[str, Any]) -> str:
        return str(next(m["id"] for m in members["members"] if m["email"] == email))

    acme_id = membership_of((await client.get("/api/v1/members", headers=tenant.headers)).json())
    globex_id = membership_of(
        (await client.get("/api/v1/members", headers=other_tenant.headers)).json()
    )
    globex_session = (await client.get("/api/v1/sessions", headers=in_globex["headers"])).json()

    async def globex_still_works() -> None:
        me = await client.get("/api/v1/me", headers=in_globex["headers"])
        assert me.status_code == 200
        assert me.json()["role"] == "developer"

    # Acme's owner cannot reach the Globex membership by its id.
    for method, path, body in (
        ("GET", f"/api/v1/members/{globex_id}/sessions", None),
        ("DELETE", f"/api/v1/members/{globex_id}/sessions", None),
        ("PATCH", f"/api/v1/members/{globex_id}", {"role": "viewer"}),
        ("POST", f"/api/v1/members/{globex_id}/unlock", None),
        ("DELETE", f"/api/v1/members/{globex_id}", None),
    ):
        response = await client.request(method, path, json=body, headers=tenant.headers)
        assert response.status_code == 404, (method, path, response.text)
    # Nor the member, signed in to Acme, their own Globex session.
    taken = await client.delete(
        f"/api/v1/sessions/{globex_session[0]['id']}", headers=in_acme["headers"]
    )
    assert taken.status_code == 404
    assert (
        await client.post("/api/v1/sessions/end-others", headers=in_acme["headers"])
    ).json() == {"ended": 0}
    await globex_still_works()

    # What Acme's owner does to the Acme membership stays in Acme.
    ended = await client.delete(f"/api/v1/members/{acme_id}/sessions", headers=tenant.headers)
    assert ended.json() == {"ended": 1}
    assert (await client.get("/api/v1/me", headers=in_acme["headers"])).status_code == 401
    await globex_still_works()
    changed = await client.patch(
        f"/api/v1/members/{acme_id}", json={"role": "viewer"}, headers=tenant.headers
    )
    assert changed.status_code == 200
    await globex_still_works()
    removed = await client.delete(f"/api/v1/members/{acme_id}", headers=tenant.headers)
    assert removed.status_code == 204
    await globex_still_works()
    # Globex's log shows nothing of it.
    log = (await client.get("/api/v1/audit-log", headers=other_tenant.headers)).json()["data"]
    assert not [e for e in log if e["action"].startswith("member.") and e["object_id"] == acme_id]
