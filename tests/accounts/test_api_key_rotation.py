"""Rotating an API key: a new key once, the old one working only through the grace period;
and keys that expire."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import func, select, text

from paygate.accounts.models import ApiKey
from paygate.db import Database
from tests.accounts.test_members import invite_and_join
from tests.conftest import STRONG_PASSWORD, Tenant


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def create_key(client: httpx.AsyncClient, tenant: Tenant, **fields: Any) -> dict[str, Any]:
    payload = {"name": "Billing server", "scopes": ["gateways:read", "invoices:read"], **fields}
    created = await client.post("/api/v1/api-keys", json=payload, headers=tenant.headers)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def stored(database: Database, key_id: str) -> ApiKey:
    async with database.transaction() as session:
        return (await session.execute(select(ApiKey).where(ApiKey.id == key_id))).scalar_one()


async def end_grace_period(database: Database, key_id: str) -> None:
    """Move the old key's (shortened) expiry into the past, as time would."""
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE api_keys SET expires_at = now() - interval '1 second' WHERE id = :id"),
            {"id": key_id},
        )


def moment(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_rotation_issues_a_new_key_and_the_old_one_works_through_the_grace_period(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    old = await create_key(client, tenant, expires_in_days=90)
    rotated = await client.post(
        f"/api/v1/api-keys/{old['id']}/rotate",
        json={"grace_period_hours": 48},
        headers=tenant.headers,
    )
    assert rotated.status_code == 201, rotated.text
    new = rotated.json()
    assert new["key"].startswith("pgk_")
    assert new["key"] != old["key"]
    assert (new["name"], new["scopes"]) == (old["name"], old["scopes"])
    assert new["rotated_from"] == old["id"]
    # Same expiry policy: the replacement lives as long as the old key was meant to.
    lifetime = moment(new["expires_at"]) - moment(new["created_at"])
    assert abs(lifetime - timedelta(days=90)) < timedelta(minutes=1)
    # The old key stops 48 hours after the rotation, well before its own expiry.
    stops = moment(new["previous_key_expires_at"])
    assert abs(stops - moment(new["created_at"]) - timedelta(hours=48)) < timedelta(minutes=1)
    before = await stored(database, old["id"])
    assert before.replaced_by == new["id"]
    assert before.expires_at == stops

    # Both work during the grace period; the list shows the link and the expiries.
    assert (await client.get("/api/v1/gateways", headers=bearer(old["key"]))).status_code == 200
    assert (await client.get("/api/v1/gateways", headers=bearer(new["key"]))).status_code == 200
    listed = {
        k["id"]: k for k in (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    }
    assert listed[old["id"]]["replaced_by"] == new["id"]
    assert moment(listed[old["id"]]["expires_at"]) == stops
    assert listed[new["id"]]["rotated_from"] == old["id"]
    assert all("key" not in k for k in listed.values())

    await end_grace_period(database, old["id"])
    assert (await client.get("/api/v1/gateways", headers=bearer(old["key"]))).status_code == 401
    assert (await client.get("/api/v1/gateways", headers=bearer(new["key"]))).status_code == 200

    # Who rotated what is in the audit log, without either key.
    entries = (
        await client.get(
            "/api/v1/audit-log", params={"object_id": old["id"]}, headers=tenant.headers
        )
    ).json()["data"]
    rotation = next(e for e in entries if e["action"] == "api_key.rotated")
    assert rotation["actor_id"] == tenant.user_id
    assert rotation["changes"]["replaced_by"] == {"before": None, "after": new["id"]}
    assert rotation["changes"]["expires_at"]["after"] == stops.isoformat()
    created = (
        await client.get(
            "/api/v1/audit-log", params={"object_id": new["id"]}, headers=tenant.headers
        )
    ).json()["data"]
    assert created[0]["changes"]["rotated_from"]["after"] == old["id"]
    everything = (await client.get("/api/v1/audit-log", headers=tenant.headers)).text
    assert old["key"] not in everything
    assert new["key"] not in everything

    # Another company cannot rotate it, nor see that it exists.
    theirs = await client.post(f"/api/v1/api-keys/{new['id']}/rotate", headers=other_tenant.headers)
    assert theirs.status_code == 404


async def test_no_grace_stops_the_old_key_at_once_and_an_earlier_expiry_is_kept(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    old = await create_key(client, tenant)
    rotated = await client.post(
        f"/api/v1/api-keys/{old['id']}/rotate",
        json={"grace_period_hours": 0},
        headers=tenant.headers,
    )
    assert rotated.status_code == 201
    assert rotated.json()["expires_at"] is None  # the old key never expired: nor does this one
    assert (await client.get("/api/v1/gateways", headers=bearer(old["key"]))).status_code == 401
    assert (
        await client.get("/api/v1/gateways", headers=bearer(rotated.json()["key"]))
    ).status_code == 200

    # A key that expires sooner than the grace period keeps its expiry (min of the two);
    # no body means the default 24 hours.
    soon = await create_key(
        client, tenant, expires_at=(datetime.now(UTC) + timedelta(hours=2)).isoformat()
    )
    again = await client.post(f"/api/v1/api-keys/{soon['id']}/rotate", headers=tenant.headers)
    assert again.status_code == 201
    assert moment(again.json()["previous_key_expires_at"]) == moment(soon["expires_at"])
    assert (await stored(database, soon["id"])).expires_at == moment(soon["expires_at"])


async def test_bad_rotations_are_refused_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    key = await create_key(client, tenant)
    for bad in (
        {"grace_period_hours": 169},
        {"grace_period_hours": -1},
        {"grace_period_hours": "a day"},
        {"grace": 2},
    ):
        refused = await client.post(
            f"/api/v1/api-keys/{key['id']}/rotate", json=bad, headers=tenant.headers
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["errors"]
    unknown = await client.post("/api/v1/api-keys/key_nope/rotate", headers=tenant.headers)
    assert unknown.status_code == 404

    # Rotated once already: the replacement is the one to rotate.
    first = await client.post(f"/api/v1/api-keys/{key['id']}/rotate", headers=tenant.headers)
    twice = await client.post(f"/api/v1/api-keys/{key['id']}/rotate", headers=tenant.headers)
    assert twice.status_code == 409
    assert first.json()["id"] in twice.json()["detail"]

    revoked = await create_key(client, tenant, name="Old server")
    await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=tenant.headers)
    refused = await client.post(f"/api/v1/api-keys/{revoked['id']}/rotate", headers=tenant.headers)
    assert refused.status_code == 409
    assert "revoked" in refused.json()["detail"]

    expired = await create_key(client, tenant, name="Expired", expires_in_days=1)
    await end_grace_period(database, expired["id"])
    refused = await client.post(f"/api/v1/api-keys/{expired['id']}/rotate", headers=tenant.headers)
    assert refused.status_code == 409
    assert "expired" in refused.json()["detail"]

    async with database.transaction() as session:
        count = (
            await session.execute(
                select(func.count()).where(ApiKey.company_id == tenant.company_id)
            )
        ).scalar_one()
    assert count == 4  # the three created, and the one good rotation


async def test_expiry_is_bounded_and_an_expired_key_is_refused(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    now = datetime.now(UTC)
    for bad in (
        {"expires_in_days": 0},
        {"expires_in_days": 731},
        {"expires_at": (now - timedelta(minutes=1)).isoformat()},
        {"expires_at": (now + timedelta(days=800)).isoformat()},
        {"expires_at": "2031-01-01T00:00:00"},  # no time zone
        {"expires_in_days": 30, "expires_at": (now + timedelta(days=30)).isoformat()},
    ):
        refused = await client.post(
            "/api/v1/api-keys",
            json={"name": "x", "scopes": ["gateways:read"], **bad},
            headers=tenant.headers,
        )
        assert refused.status_code == 422, (bad, refused.text)
        assert refused.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/api-keys", headers=tenant.headers)).json() == []

    key = await create_key(client, tenant, expires_in_days=730)
    lifetime = moment(key["expires_at"]) - moment(key["created_at"])
    assert abs(lifetime - timedelta(days=730)) < timedelta(minutes=1)
    assert (await client.get("/api/v1/gateways", headers=bearer(key["key"]))).status_code == 200
    await end_grace_period(database, key["id"])
    refused = await client.get("/api/v1/gateways", headers=bearer(key["key"]))
    assert refused.status_code == 401
    assert refused.json()["detail"] == "The token is invalid, expired or revoked."
    listed = (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    assert moment(listed[0]["expires_at"]) < datetime.now(UTC)


async def test_rotation_cannot_hand_out_scopes_the_rotator_does_not_hold(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    # The owner's key manages members; a developer (api_keys:write, no members:write) must
    # not get a working copy of it by rotating it, nor can another company touch it.
    broad = await create_key(
        client, tenant, name="Provisioning", scopes=["members:write", "gateways:read"]
    )
    developer = await invite_and_join(client, tenant, "dev@acme-invoicing.com", "developer")
    refused = await client.post(
        f"/api/v1/api-keys/{broad['id']}/rotate", headers=developer["headers"]
    )
    assert refused.status_code == 403, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert "members:write" in refused.json()["detail"]
    assert "pgk_" not in refused.text
    foreign = await client.post(
        f"/api/v1/api-keys/{broad['id']}/rotate", headers=other_tenant.headers
    )
    assert foreign.status_code == 404

    # An owner's key rotated after the owner was made a developer: refused the same way.
    demoted = await invite_and_join(client, tenant, "former-owner@acme-invoicing.com", "owner")
    theirs = await create_key(
        client,
        Tenant(**{**tenant.__dict__, "access_token": demoted["access_token"]}),
        name="Company settings",
        scopes=["company:write"],
    )
    members = (await client.get("/api/v1/members", headers=tenant.headers)).json()["members"]
    [membership] = [m for m in members if m["email"] == "former-owner@acme-invoicing.com"]
    changed = await client.patch(
        f"/api/v1/members/{membership['id']}", json={"role": "developer"}, headers=tenant.headers
    )
    assert changed.status_code == 200, changed.text
    signed_in = await client.post(
        "/api/v1/auth/login",
        json={"email": "former-owner@acme-invoicing.com", "password": STRONG_PASSWORD},
    )
    refused = await client.post(
        f"/api/v1/api-keys/{theirs['id']}/rotate",
        headers=bearer(signed_in.json()["access_token"]),
    )
    assert refused.status_code == 403, refused.text

    # Nothing changed: both keys work on, no replacement was made.
    for key in (broad, theirs):
        kept = await stored(database, key["id"])
        assert (kept.replaced_by, kept.revoked_at) == (None, None)
        assert (await client.get("/api/v1/me", headers=bearer(key["key"]))).status_code == 200
    async with database.transaction() as session:
        rotated = (
            await session.execute(
                select(func.count()).where(
                    ApiKey.company_id == tenant.company_id, ApiKey.rotated_from.is_not(None)
                )
            )
        ).scalar_one()
    assert rotated == 0
    # The owner, who holds every scope, still rotates it.
    allowed = await client.post(f"/api/v1/api-keys/{broad['id']}/rotate", headers=tenant.headers)
    assert allowed.status_code == 201, allowed.text
