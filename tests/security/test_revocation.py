"""The revocation list: PostgreSQL always, Redis when configured, purged when no token needs it."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta

import httpx
import pytest
from pydantic import ValidationError
from redis.asyncio import Redis
from sqlalchemy import select, text

from paygate.accounts.tasks import purge_revoked_tokens
from paygate.app import create_app
from paygate.db import Database
from paygate.jobs import build_job_app
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.security.models import RevokedToken
from paygate.security.revocation import RevocationList, RevocationUnavailable
from paygate.settings import Settings
from tests.conftest import Tenant, register
from tests.fakes.mail import Mailbox, link_in
from tests.fakes.servers import free_port
from tests.peers import TEST_REDIS_URL, redis_test_settings
from tests.web.helpers import csrf_of


@pytest.fixture
def redis_settings(settings: Settings) -> Iterator[Settings]:
    with redis_test_settings(settings) as configured:
        yield configured


@pytest.fixture
async def with_redis(redis_settings: Settings) -> AsyncIterator[RevocationList]:
    revocations = RevocationList.from_settings(redis_settings)
    yield revocations
    await revocations.close()


def ident(kind: str) -> str:
    return f"{kind}_{secrets.token_hex(8)}"


async def test_postgresql_only_revokes_a_token_or_a_whole_session(
    settings: Settings, database: Database
) -> None:
    revocations = RevocationList.from_settings(settings)
    assert revocations.redis is None
    jti, sid, other_sid = ident("jti"), ident("ses"), ident("ses")
    async with database.transaction() as session:
        await revocations.revoke(session, jti, utcnow() + timedelta(minutes=5))
        await revocations.revoke(session, sid, revocations.session_until())
    async with database.transaction() as session:
        assert await revocations.is_revoked(session, jti, other_sid)
        assert await revocations.is_revoked(session, ident("jti"), sid)
        assert not await revocations.is_revoked(session, ident("jti"), other_sid)
        # Past the last covered token's expiry, the entry no longer counts.
        await session.execute(
            text(
                "UPDATE revoked_tokens SET expires_at = now() - interval '1 second'"
                " WHERE identifier = :id"
            ),
            {"id": jti},
        )
        assert not await revocations.is_revoked(session, jti, other_sid)


async def test_a_rolled_back_change_leaves_no_postgresql_entry(
    settings: Settings, database: Database
) -> None:
    revocations = RevocationList.from_settings(settings)
    sid = ident("ses")

    async def failing_request() -> None:
        async with database.transaction() as session:
            await revocations.revoke(session, sid, revocations.session_until())
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError):
        await failing_request()
    async with database.transaction() as session:
        assert not await revocations.is_revoked(session, ident("jti"), sid)


async def test_with_redis_writes_go_to_both_and_reads_to_redis(
    settings: Settings, with_redis: RevocationList, database: Database
) -> None:
    sid = ident("ses")
    until = with_redis.session_until()
    async with database.transaction() as session:
        await with_redis.revoke(session, sid, until)
    async with database.transaction() as session:
        stored = await session.get(RevokedToken, sid)
        assert stored is not None
        assert stored.expires_at == until
        assert await with_redis.is_revoked(session, ident("jti"), sid)
    assert with_redis.redis is not None
    # Redis forgets the entry on its own when the last covered token would have expired.
    expiry_ms = await with_redis.redis.pexpiretime(with_redis.key(sid))
    assert expiry_ms == int(until.timestamp() * 1000)

    # A process without Redis, sharing the database, sees the same entry.
    postgres_only = RevocationList.from_settings(settings)
    async with database.transaction() as session:
        assert await postgres_only.is_revoked(session, ident("jti"), sid)

    # Reads go to Redis only: an entry written by a PostgreSQL-only process is not seen
    # there (the decision in docs/decisions.md: every node of a Redis deployment uses Redis).
    pg_only_sid = ident("ses")
    async with database.transaction() as session:
        await postgres_only.revoke(session, pg_only_sid, postgres_only.session_until())
    async with database.transaction() as session:
        assert not await with_redis.is_revoked(session, ident("jti"), pg_only_sid)


async def connections_named(name: str) -> int:
    async with Redis.from_url(TEST_REDIS_URL) as admin:
        clients = await admin.client_list()
    return sum(1 for client in clients if client.get("name") == name)


async def test_the_app_opens_one_redis_client_and_closes_it_at_shutdown(
    redis_settings: Settings, database: Database
) -> None:
    app = create_app(redis_settings, database=database)
    name = redis_settings.revocation_key_prefix
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://paygate.test") as c:
            tenant = await register(c, "Acme Redis")
            for _ in range(3):
                assert (await c.get("/api/v1/me", headers=tenant.headers)).status_code == 200
        assert await connections_named(name) == 1
    # Closing is asynchronous on the server's side: wait for it, boundedly.
    for _ in range(50):
        if await connections_named(name) == 0:
            break
        await asyncio.sleep(0.1)
    assert await connections_named(name) == 0


async def test_when_redis_fails_reads_fall_back_to_postgresql_and_writes_fail(
    redis_settings: Settings, database: Database
) -> None:
    # Nothing listens on this port: every Redis call fails at once.
    broken = RevocationList(
        redis_settings,
        Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_connect_timeout=1),
    )
    postgres_only = RevocationList(redis_settings)
    sid = ident("ses")
    async with database.transaction() as session:
        await postgres_only.revoke(session, sid, postgres_only.session_until())
    async with database.transaction() as session:
        assert await broken.is_revoked(session, ident("jti"), sid)
        assert not await broken.is_revoked(session, ident("jti"), ident("ses"))

    # A revocation Redis did not take fails, and rolls back with the change it belonged to:
    # no node that reads Redis can be left accepting a token PostgreSQL says is revoked.
    lost = ident("ses")

    async def request() -> None:
        async with database.transaction() as session:
            await broken.revoke(session, lost, broken.session_until())

    with pytest.raises(RevocationUnavailable):
        await request()
    async with database.transaction() as session:
        assert await session.get(RevokedToken, lost) is None
    await broken.close()


async def test_the_purge_job_removes_only_entries_no_token_needs(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    jobs: JobContext,
) -> None:
    assert (await client.post("/api/v1/auth/logout", headers=tenant.headers)).status_code == 204
    async with database.transaction() as session:
        unexpired = select(RevokedToken.identifier).where(RevokedToken.expires_at > utcnow())
        live = set((await session.execute(unexpired)).scalars())
        assert len(live) >= 2, "sign-out put the token and its session on the list"
        expired = ident("ses")
        session.add(RevokedToken(identifier=expired, expires_at=utcnow() - timedelta(minutes=1)))

    await purge_revoked_tokens(timestamp=0)
    await purge_revoked_tokens(timestamp=0)  # a doubled tick does no harm

    async with database.transaction() as session:
        remaining = set((await session.execute(select(RevokedToken.identifier))).scalars())
    assert expired not in remaining
    assert live <= remaining
    # The signed-out token stays refused; the other company is still signed in.
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=other_tenant.headers)).status_code == 200


def test_the_purge_runs_on_a_schedule(settings: Settings) -> None:
    assert settings.database_url is not None
    app = build_job_app(settings.database_url)
    assert "accounts:purge_revoked_tokens" in app.tasks
    periodic = {task.task.name for task in app.periodic_registry.periodic_tasks.values()}
    assert "accounts:purge_revoked_tokens" in periodic


def test_a_key_prefix_with_spaces_is_refused_at_start() -> None:
    with pytest.raises(ValidationError, match="revocation_key_prefix"):
        Settings(revocation_key_prefix="two words")


@pytest.fixture
async def redis_down(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A paygate node whose Redis does not answer (nothing listens on its port)."""
    broken = settings.model_copy(
        update={"redis_url": f"redis://127.0.0.1:{free_port()}/0", "revocation_key_prefix": "down"}
    )
    app = create_app(broken, database=database)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.8", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://paygate.test") as client:
        yield client
    await app.state.revocations.close()


async def test_with_redis_down_ending_a_session_answers_503_and_changes_nothing(
    redis_down: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    tenant = await register(client, "Acme Invoicing")
    other = await register(client, "Globex Billing")

    # Signing out cannot reach every node: say so plainly, keep the session as it was.
    refused = await redis_down.post("/api/v1/auth/logout", headers=tenant.headers)
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["type"].endswith("/revocation-unavailable")
    assert "Retry-After" in refused.headers
    assert (await redis_down.get("/api/v1/me", headers=tenant.headers)).status_code == 200
    laptop = await client.post(
        "/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password}
    )
    ended = await redis_down.post("/api/v1/sessions/end-others", headers=tenant.headers)
    assert ended.status_code == 503
    laptop_headers = {"Authorization": f"Bearer {laptop.json()['access_token']}"}
    assert (await client.get("/api/v1/me", headers=laptop_headers)).status_code == 200
    assert (await client.get("/api/v1/me", headers=other.headers)).status_code == 200

    async with database.transaction() as session:
        live = (
            await session.execute(
                text(
                    "SELECT count(*) FROM auth_sessions WHERE user_id = :u AND revoked_at IS NULL"
                ),
                {"u": tenant.user_id},
            )
        ).scalar_one()
    assert live == 2


async def test_with_redis_down_a_reused_refresh_token_still_ends_its_family(
    redis_down: httpx.AsyncClient, client: httpx.AsyncClient, database: Database
) -> None:
    tenant = await register(client, "Acme Invoicing")
    other = await register(client, "Globex Billing")
    rotated = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert rotated.status_code == 200
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE refresh_tokens SET used_at = used_at - interval '1 minute'"
                " WHERE used_at IS NOT NULL"
            )
        )
    # The leaked token comes back while Redis is down: still a 401, and the thief's newer
    # refresh token no longer works (the sessions table is PostgreSQL's alone).
    reused = await redis_down.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert reused.status_code == 401, reused.text
    newest = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
    )
    assert newest.status_code == 401
    # Nodes that read PostgreSQL refuse its access tokens at once.
    headers = {"Authorization": f"Bearer {rotated.json()['access_token']}"}
    assert (await client.get("/api/v1/me", headers=headers)).status_code == 401
    assert (await client.get("/api/v1/me", headers=other.headers)).status_code == 200


async def test_with_redis_down_a_password_reset_waits_and_the_link_keeps_working(
    redis_down: httpx.AsyncClient,
    client: httpx.AsyncClient,
    database: Database,
    mailbox: Mailbox,
) -> None:
    tenant = await register(client, "Acme Invoicing")
    await register(client, "Globex Billing")
    asked = await client.post("/api/v1/auth/password-reset", json={"email": tenant.email})
    assert asked.status_code == 202
    link = link_in(mailbox.wait_for(tenant.email)[0])
    token = link.split("token=", 1)[1]
    new_password = "Quartz-Meadow-Pelican-77"

    refused = await redis_down.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert refused.status_code == 503, refused.text
    assert token not in refused.text
    # The page says the service is busy, not that the link is bad.
    page = await redis_down.get(f"/reset-password?token={token}")
    assert page.status_code == 200
    posted = await redis_down.post(
        "/reset-password",
        data={"token": token, "new_password": new_password, "csrf_token": csrf_of(page.text)},
    )
    assert posted.status_code == 503, posted.text
    assert "no longer works" not in posted.text
    assert token not in posted.text

    # Nothing changed: the old password and session work, and the link works once Redis does.
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200
    old = await client.post(
        "/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password}
    )
    assert old.status_code == 200
    done = await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": new_password}
    )
    assert done.status_code == 204, done.text
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
