"""Sessions end everywhere at once: sign-out, member removal, role change, password change
and reset, the sessions API.

Each story acts on one paygate node (this process, configured with Redis) and checks the
old access token against two other real paygate processes sharing the database: one that
reads the revocation list from Redis, one that has only PostgreSQL. Two companies always.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from sqlalchemy import select

from paygate.accounts.models import AuthSession
from paygate.app import create_app
from paygate.db import Database
from paygate.settings import Settings
from tests.accounts.test_members import invite_and_join
from tests.conftest import STRONG_PASSWORD, Tenant, register
from tests.fakes.mail import Mailbox, link_in
from tests.peers import (
    TEST_REDIS_URL,
    Peer,
    redis_test_settings,
    start_peer,
)

NEW_PASSWORD = "Quartz-Meadow-Bicycle-88"


@pytest.fixture(scope="module")
def redis_settings(settings: Settings) -> Iterator[Settings]:
    with redis_test_settings(settings) as configured:
        yield configured


@pytest.fixture(scope="module")
async def redis_app(redis_settings: Settings, database: Database) -> AsyncIterator[Any]:
    app = create_app(redis_settings, database=database)
    yield app
    await app.state.revocations.close()


@pytest.fixture
async def node(redis_app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """This paygate node: where the people act."""
    transport = httpx.ASGITransport(app=redis_app, client=("203.0.113.9", 50000))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://paygate.test", headers={"User-Agent": "StoryTest/1"}
    ) as client:
        yield client


@pytest.fixture(scope="module")
def log_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("peers")


@pytest.fixture(scope="module")
def redis_peer(redis_settings: Settings, log_dir: Path) -> Iterator[Peer]:
    with start_peer(redis_settings, log_dir, redis_url=TEST_REDIS_URL) as peer:
        yield peer


@pytest.fixture(scope="module")
def postgres_peer(redis_settings: Settings, log_dir: Path) -> Iterator[Peer]:
    with start_peer(redis_settings, log_dir, redis_url=None) as peer:
        yield peer


@pytest.fixture
def peers(redis_peer: Peer, postgres_peer: Peer) -> tuple[Peer, Peer]:
    return redis_peer, postgres_peer


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def answers(peers: tuple[Peer, ...], token: str) -> list[int]:
    """What each other node answers to this access token."""
    codes = []
    for peer in peers:
        async with peer.client() as client:
            codes.append((await client.get("/api/v1/me", headers=bearer(token))).status_code)
    return codes


async def sign_in(client: httpx.AsyncClient, email: str, company_id: str) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/auth/login",
        json={"email": email, "password": STRONG_PASSWORD, "company_id": company_id},
    )
    assert response.status_code == 200, response.text
    tokens: dict[str, Any] = response.json()
    return tokens


async def join(client: httpx.AsyncClient, owner: Tenant, role: str) -> dict[str, Any]:
    """A new member of the owner's company, signed in; with its membership id."""
    email = f"{role}-{secrets.token_hex(4)}@example.com"
    member = await invite_and_join(client, owner, email, role)
    listing = (await client.get("/api/v1/members", headers=owner.headers)).json()
    member["email"] = email
    member["membership_id"] = next(m["id"] for m in listing["members"] if m["email"] == email)
    return member


async def audit_actions(client: httpx.AsyncClient, owner: Tenant, object_id: str) -> list[str]:
    entries = (
        await client.get(
            "/api/v1/audit-log", params={"object_id": object_id}, headers=owner.headers
        )
    ).json()["data"]
    return [e["action"] for e in entries]


async def test_sign_out_is_refused_by_every_node(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    assert await answers(peers, acme.access_token) == [200, 200]

    assert (await node.post("/api/v1/auth/logout", headers=acme.headers)).status_code == 204

    assert (await node.get("/api/v1/me", headers=acme.headers)).status_code == 401
    assert await answers(peers, acme.access_token) == [401, 401]
    refreshed = await node.post("/api/v1/auth/refresh", json={"refresh_token": acme.refresh_token})
    assert refreshed.status_code == 401
    # The other company is untouched.
    assert await answers(peers, globex.access_token) == [200, 200]


async def test_a_removed_member_is_refused_by_every_node(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer], database: Database
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    member = await join(node, acme, "admin")
    assert await answers(peers, member["access_token"]) == [200, 200]

    removed = await node.delete(f"/api/v1/members/{member['membership_id']}", headers=acme.headers)
    assert removed.status_code == 204

    assert await answers(peers, member["access_token"]) == [401, 401]
    refreshed = await node.post(
        "/api/v1/auth/refresh", json={"refresh_token": member["refresh_token"]}
    )
    assert refreshed.status_code == 401
    async with database.transaction() as session:
        ended = (
            await session.execute(
                select(AuthSession).where(AuthSession.company_id == acme.company_id)
            )
        ).scalars()
        reasons = {s.user_id == acme.user_id: s.revoked_reason for s in ended}
    assert reasons == {True: None, False: "member_removed"}
    assert await answers(peers, acme.access_token) == [200, 200]
    assert await answers(peers, globex.access_token) == [200, 200]


async def test_a_role_change_ends_the_members_sessions_on_every_node(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    member = await join(node, acme, "developer")
    assert await answers(peers, member["access_token"]) == [200, 200]

    changed = await node.patch(
        f"/api/v1/members/{member['membership_id']}",
        json={"role": "viewer"},
        headers=acme.headers,
    )
    assert changed.status_code == 200, changed.text

    assert await answers(peers, member["access_token"]) == [401, 401]
    # Signing in again works, with the new role.
    again = await sign_in(node, member["email"], acme.company_id)
    me = (await node.get("/api/v1/me", headers=bearer(again["access_token"]))).json()
    assert me["role"] == "viewer"
    assert await answers(peers, again["access_token"]) == [200, 200]
    assert await answers(peers, acme.access_token) == [200, 200]
    assert await answers(peers, globex.access_token) == [200, 200]
    actions = await audit_actions(node, acme, member["membership_id"])
    assert actions[0] == "member.role_changed"


async def test_a_password_change_ends_the_other_sessions_on_every_node(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    laptop = await sign_in(node, acme.email, acme.company_id)

    changed = await node.post(
        "/api/v1/me/password",
        json={"current_password": STRONG_PASSWORD, "new_password": NEW_PASSWORD},
        headers=bearer(laptop["access_token"]),
    )
    assert changed.status_code == 204, changed.text

    # The session that changed it goes on; the one from sign-up ends everywhere.
    assert await answers(peers, acme.access_token) == [401, 401]
    assert await answers(peers, laptop["access_token"]) == [200, 200]
    assert await answers(peers, globex.access_token) == [200, 200]


async def test_a_password_reset_ends_every_session_on_every_node(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer], mailbox: Mailbox
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    laptop = await sign_in(node, acme.email, acme.company_id)

    asked = await node.post("/api/v1/auth/password-reset", json={"email": acme.email})
    assert asked.status_code == 202
    link = link_in(mailbox.wait_for(acme.email)[0])
    token = parse_qs(urlsplit(link).query)["token"][0]
    confirmed = await node.post(
        "/api/v1/auth/password-reset/confirm",
        json={"token": token, "new_password": NEW_PASSWORD},
    )
    assert confirmed.status_code == 204, confirmed.text

    assert await answers(peers, acme.access_token) == [401, 401]
    assert await answers(peers, laptop["access_token"]) == [401, 401]
    assert await answers(peers, globex.access_token) == [200, 200]


async def test_ending_sessions_through_the_sessions_api(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    laptop = await sign_in(node, acme.email, acme.company_id)
    phone = await sign_in(node, acme.email, acme.company_id)

    listed = await node.get("/api/v1/sessions", headers=bearer(phone["access_token"]))
    assert listed.status_code == 200
    sessions = listed.json()
    assert len(sessions) == 3  # sign-up, laptop, phone
    assert [s["current"] for s in sessions] == [True, False, False]
    assert {s["ip"] for s in sessions} == {"203.0.113.9"}
    assert {s["user_agent"] for s in sessions} == {"StoryTest/1"}
    assert "refresh_token" not in listed.text
    assert phone["access_token"] not in listed.text
    phone_id, laptop_id, signup_id = (s["id"] for s in sessions)

    # From the phone, end the laptop's session.
    ended = await node.delete(
        f"/api/v1/sessions/{laptop_id}", headers=bearer(phone["access_token"])
    )
    assert ended.status_code == 204
    assert await answers(peers, laptop["access_token"]) == [401, 401]
    assert await answers(peers, phone["access_token"]) == [200, 200]
    refreshed = await node.post(
        "/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]}
    )
    assert refreshed.status_code == 401

    # Sign out everywhere else: only the phone stays.
    others = await node.post("/api/v1/sessions/end-others", headers=bearer(phone["access_token"]))
    assert others.json() == {"ended": 1}
    assert await answers(peers, acme.access_token) == [401, 401]
    remaining = (await node.get("/api/v1/sessions", headers=bearer(phone["access_token"]))).json()
    assert [s["id"] for s in remaining] == [phone_id]

    # Ending the session in use is signing out.
    current = await node.delete(
        f"/api/v1/sessions/{phone_id}", headers=bearer(phone["access_token"])
    )
    assert current.status_code == 204
    assert await answers(peers, phone["access_token"]) == [401, 401]
    assert await answers(peers, globex.access_token) == [200, 200]

    again = await sign_in(node, acme.email, acme.company_id)
    actions = [
        e["action"]
        for e in (
            await node.get(
                "/api/v1/audit-log",
                params={"actor_id": acme.user_id},
                headers=bearer(again["access_token"]),
            )
        ).json()["data"]
    ]
    assert {"auth.session_ended", "auth.other_sessions_ended", "auth.sign_out"} <= set(actions)
    assert signup_id not in {
        s["id"]
        for s in (await node.get("/api/v1/sessions", headers=bearer(again["access_token"]))).json()
    }


async def test_an_owner_ends_a_members_sessions(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    member = await join(node, acme, "admin")
    second = await sign_in(node, member["email"], acme.company_id)

    listed = await node.get(
        f"/api/v1/members/{member['membership_id']}/sessions", headers=acme.headers
    )
    assert listed.status_code == 200
    assert len(listed.json()) == 2
    assert not any(s["current"] for s in listed.json())

    ended = await node.delete(
        f"/api/v1/members/{member['membership_id']}/sessions", headers=acme.headers
    )
    assert ended.status_code == 200
    assert ended.json() == {"ended": 2}
    for token in (member["access_token"], second["access_token"]):
        assert await answers(peers, token) == [401, 401]
    assert await answers(peers, acme.access_token) == [200, 200]
    assert await answers(peers, globex.access_token) == [200, 200]
    assert "member.sessions_ended" in await audit_actions(node, acme, member["membership_id"])
    # Still a member: they sign in again.
    await sign_in(node, member["email"], acme.company_id)


async def test_only_owners_end_other_members_sessions(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    await register(node, "Globex Sessions")
    viewer = await join(node, acme, "viewer")
    admin = await join(node, acme, "admin")
    owner_membership = next(
        m["id"]
        for m in (await node.get("/api/v1/members", headers=acme.headers)).json()["members"]
        if m["email"] == acme.email
    )

    for caller in (viewer, admin):
        listed = await node.get(
            f"/api/v1/members/{owner_membership}/sessions", headers=bearer(caller["access_token"])
        )
        assert listed.status_code == 403
        refused = await node.delete(
            f"/api/v1/members/{owner_membership}/sessions", headers=bearer(caller["access_token"])
        )
        assert refused.status_code == 403
        assert refused.headers["content-type"] == "application/problem+json"
    # Nor through their own sessions API: another member's session is not theirs.
    owner_session = (await node.get("/api/v1/sessions", headers=acme.headers)).json()[0]["id"]
    taken = await node.delete(
        f"/api/v1/sessions/{owner_session}", headers=bearer(viewer["access_token"])
    )
    assert taken.status_code == 404
    assert await answers(peers, acme.access_token) == [200, 200]


async def test_another_companys_sessions_answer_404(
    node: httpx.AsyncClient, peers: tuple[Peer, Peer]
) -> None:
    acme = await register(node, "Acme Sessions")
    globex = await register(node, "Globex Sessions")
    member = await join(node, acme, "developer")
    acme_session = (await node.get("/api/v1/sessions", headers=acme.headers)).json()[0]["id"]

    assert (
        await node.delete(f"/api/v1/sessions/{acme_session}", headers=globex.headers)
    ).status_code == 404
    for method in ("GET", "DELETE"):
        response = await node.request(
            method, f"/api/v1/members/{member['membership_id']}/sessions", headers=globex.headers
        )
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/problem+json"
    assert await answers(peers, acme.access_token) == [200, 200]
    assert await answers(peers, member["access_token"]) == [200, 200]
    # Globex's own list shows only Globex's sessions.
    mine = (await node.get("/api/v1/sessions", headers=globex.headers)).json()
    assert acme_session not in {s["id"] for s in mine}


async def test_api_keys_have_no_sessions(node: httpx.AsyncClient) -> None:
    acme = await register(node, "Acme Sessions")
    created = await node.post(
        "/api/v1/api-keys",
        json={"name": "server", "scopes": ["members:read"]},
        headers=acme.headers,
    )
    key = bearer(created.json()["key"])
    assert (await node.get("/api/v1/sessions", headers=key)).status_code == 400
    assert (await node.post("/api/v1/sessions/end-others", headers=key)).status_code == 400
