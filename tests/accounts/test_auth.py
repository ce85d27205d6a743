"""Signing up, signing in, rotating tokens and signing out, through the API."""

from __future__ import annotations

import httpx
from sqlalchemy import select

from paygate.db import Database
from paygate.security.models import AuditEntry
from tests.conftest import STRONG_PASSWORD, Tenant, age_spent_refresh_tokens, register


async def test_register_creates_company_owner_and_tokens(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    me = (await client.get("/api/v1/me", headers=tenant.headers)).json()
    assert me["user"]["email"] == tenant.email
    assert me["company"] == {"id": tenant.company_id, "name": "Acme Invoicing"}
    assert me["role"] == "owner"
    assert "members:write" in me["permissions"]
    assert me["memberships"] == [
        {"company_id": tenant.company_id, "company_name": "Acme Invoicing", "role": "owner"}
    ]


async def test_register_refuses_weak_passwords_and_says_why(client: httpx.AsyncClient) -> None:
    cases = {
        "short": "Use at least 12 characters.",
        "password1234": "This is a very common password.",
        "acmewidgets2024": "built from your email or company name",
    }
    for password, reason in cases.items():
        response = await client.post(
            "/api/v1/auth/register",
            json={
                "email": "jane@acmewidgets.com",
                "password": password,
                "company_name": "Acme Widgets",
            },
        )
        assert response.status_code == 422, password
        [error] = response.json()["errors"]
        assert error["field"] == "password"
        assert reason in error["message"]
        assert password not in response.text


async def test_register_twice_with_one_email_is_a_conflict(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": tenant.email.upper(), "password": STRONG_PASSWORD, "company_name": "Again"},
    )
    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"


async def test_login_and_failed_login_are_audited(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    wrong = await client.post(
        "/api/v1/auth/login", json={"email": tenant.email, "password": "not-the-password"}
    )
    assert wrong.status_code == 401
    assert wrong.json()["type"].endswith("/invalid-credentials")
    unknown = await client.post(
        "/api/v1/auth/login", json={"email": "nobody@example.com", "password": "whatever-it-is"}
    )
    assert unknown.status_code == 401
    assert unknown.json() | {"instance": None} == wrong.json() | {
        "instance": None
    }  # no account enumeration

    ok = await client.post(
        "/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password}
    )
    assert ok.status_code == 200
    body = ok.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] > 0
    assert body["refresh_token"].startswith("pgr_")

    log = (
        await client.get(
            "/api/v1/audit-log", params={"action": "auth.sign_in"}, headers=tenant.headers
        )
    ).json()
    outcomes = [entry["outcome"] for entry in log["data"]]
    assert outcomes == ["success", "failure"]
    assert log["data"][1]["detail"] == "wrong email or password"
    assert "not-the-password" not in str(log)
    async with database.transaction() as session:
        anonymous = (
            await session.execute(
                select(AuditEntry).where(AuditEntry.actor_label == "nobody@example.com")
            )
        ).scalar_one()
    assert anonymous.company_id is None
    assert anonymous.outcome == "failure"


async def test_refresh_rotates_and_reuse_revokes_the_family(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    first = await client.post("/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert first.status_code == 200
    rotated = first.json()
    assert rotated["refresh_token"] != tenant.refresh_token
    new_headers = {"Authorization": f"Bearer {rotated['access_token']}"}
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 200

    # Within the grace period a second use is a race of one browser's requests.
    raced = await client.post("/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert raced.status_code == 200

    # Later, the spent token again: someone copied it. The whole family ends.
    await age_spent_refresh_tokens(database)
    reused = await client.post("/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token})
    assert reused.status_code == 401
    assert (await client.get("/api/v1/me", headers=new_headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
    latest = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated["refresh_token"]}
    )
    assert latest.status_code == 401


async def test_logout_ends_the_access_token_and_its_refresh_family(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    other_session = (
        await client.post(
            "/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password}
        )
    ).json()
    assert (await client.post("/api/v1/auth/logout", headers=tenant.headers)).status_code == 204
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
    refreshed = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert refreshed.status_code == 401
    # Another sign-in of the same person is a separate session and goes on.
    other_headers = {"Authorization": f"Bearer {other_session['access_token']}"}
    assert (await client.get("/api/v1/me", headers=other_headers)).status_code == 200


async def test_bad_tokens_are_401(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for header in [
        "",
        "Bearer",
        "Bearer nonsense",
        "Basic abc",
        f"Bearer {tenant.access_token}x",
        "Bearer pgk_unknown",
    ]:
        response = await client.get("/api/v1/gateways", headers={"Authorization": header})
        assert response.status_code == 401, header
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"] == "Bearer"


async def test_a_member_of_two_companies_chooses_at_sign_in(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    second = await register(client, "Second Co")
    invite = await client.post(
        "/api/v1/members", json={"email": tenant.email, "role": "viewer"}, headers=second.headers
    )
    token = invite.json()["invite_url"].rsplit("/", 1)[1]
    accepted = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": tenant.password}
    )
    assert accepted.status_code == 200
    login = await client.post(
        "/api/v1/auth/login",
        json={"email": tenant.email, "password": tenant.password, "company_id": second.company_id},
    )
    me = (
        await client.get(
            "/api/v1/me", headers={"Authorization": f"Bearer {login.json()['access_token']}"}
        )
    ).json()
    assert me["company"]["id"] == second.company_id
    assert me["role"] == "viewer"
    assert len(me["memberships"]) == 2
