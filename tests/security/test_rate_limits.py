"""Brute force: rate limits per IP and per account (memory and Redis), and account lockout."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from paygate.accounts.models import User
from paygate.app import create_app
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.security.models import AuditEntry
from paygate.security.rate_limits import RateLimits
from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD, Tenant, register
from tests.web.helpers import csrf_of

REDIS_URL = "redis://127.0.0.1:6379/0"


def _client(app: Any, ip: str) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 41000))
    return httpx.AsyncClient(transport=transport, base_url="http://paygate.test")


def _ip() -> str:
    # A fresh documentation-range address per test: no test shares another's counters.
    return f"192.0.2.{secrets.randbelow(250) + 1}"


def _tight(settings: Settings, **limits: str) -> Settings:
    return settings.model_copy(update={f"rate_limit_{k}": v for k, v in limits.items()})


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


async def test_many_sign_ins_from_one_ip_get_429_with_retry_after(
    settings: Settings, database: Database
) -> None:
    app = create_app(_tight(settings, sign_in_ip="5/minute"), database=database)
    ip = _ip()
    async with _client(app, ip) as attacker, _client(app, "192.0.2.251") as bystander:
        for n in range(5):
            answer = await _sign_in(attacker, f"guess-{n}@example.com", "wrong-password-1")
            assert answer.status_code == 401
        refused = await _sign_in(attacker, "guess-9@example.com", "wrong-password-1")
        assert refused.status_code == 429
        assert refused.headers["content-type"] == "application/problem+json"
        assert refused.json()["type"].endswith("/rate-limited")
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        # Another address is not held back by this one.
        assert (await _sign_in(bystander, "guess-0@example.com", "x" * 12)).status_code == 401


async def test_many_sign_ins_against_one_account_get_429_from_any_ip(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    tenant = await register(client)
    app = create_app(_tight(settings, sign_in_account="3/minute"), database=database)
    for n in range(3):
        async with _client(app, f"198.51.100.{100 + n}") as c:
            assert (await _sign_in(c, tenant.email, "wrong-password-1")).status_code == 401
    async with _client(app, "198.51.100.110") as c:
        # Case does not make a new account key.
        refused = await _sign_in(c, tenant.email.upper(), tenant.password)
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
        # Other accounts from the same address are unaffected.
        assert (await _sign_in(c, "someone-else@example.com", "x" * 12)).status_code == 401


async def test_sign_up_refresh_and_the_pay_page_are_limited(
    settings: Settings, database: Database
) -> None:
    app = create_app(
        _tight(settings, sign_up_ip="1/minute", refresh_ip="2/minute", pay_page_ip="2/minute"),
        database=database,
    )
    async with _client(app, _ip()) as c:
        tenant = await register(c)
        again = await c.post(
            "/api/v1/auth/register",
            json={"email": "x@example.com", "password": STRONG_PASSWORD, "company_name": "X"},
        )
        assert again.status_code == 429
        refresh = {"refresh_token": tenant.refresh_token}
        assert (await c.post("/api/v1/auth/refresh", json=refresh)).status_code == 200
        assert (
            await c.post("/api/v1/auth/refresh", json={"refresh_token": "no"})
        ).status_code == 401
        assert (await c.post("/api/v1/auth/refresh", json=refresh)).status_code == 429
        for _ in range(2):
            assert (await c.get("/pay/no-such-invoice")).status_code == 404
        page = await c.get("/pay/no-such-invoice")
        assert page.status_code == 429
        assert "text/html" in page.headers["content-type"]
        assert int(page.headers["Retry-After"]) >= 1


async def test_the_web_sign_in_form_is_limited(settings: Settings, database: Database) -> None:
    app = create_app(_tight(settings, sign_in_ip="1/minute"), database=database)
    async with _client(app, _ip()) as c:
        form = {"email": "nobody@example.com", "password": "wrong-password-1"}
        form["csrf_token"] = csrf_of((await c.get("/login")).text)
        assert (await c.post("/login", data=form)).status_code == 401
        page = await c.post("/login", data=form)
        assert page.status_code == 429
        assert "Too many attempts" in page.text
        assert int(page.headers["Retry-After"]) >= 1


async def _invite_member(client: httpx.AsyncClient, owner: Tenant) -> tuple[str, str, str]:
    """A developer in the owner's company: (email, membership id, access token)."""
    email = f"dev-{secrets.token_hex(4)}@example.com"
    invited = await client.post(
        "/api/v1/members", json={"email": email, "role": "developer"}, headers=owner.headers
    )
    assert invited.status_code == 201, invited.text
    token = invited.json()["invite_url"].rsplit("/", 1)[1]
    joined = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
    )
    assert joined.status_code == 200, joined.text
    members = (await client.get("/api/v1/members", headers=owner.headers)).json()["members"]
    [member] = [m for m in members if m["email"] == email]
    return email, member["id"], joined.json()["access_token"]


async def test_ten_failed_sign_ins_lock_the_account_even_against_the_right_password(
    client: httpx.AsyncClient, app: Any, database: Database
) -> None:
    owner = await register(client)
    email, membership_id, member_token = await _invite_member(client, owner)
    async with _client(app, _ip()) as c:
        for _ in range(9):
            wrong = await _sign_in(c, email, "wrong-password-1")
            assert wrong.json()["type"].endswith("/invalid-credentials")
        tenth = await _sign_in(c, email, "wrong-password-1")
        assert tenth.status_code == 401
        assert tenth.json()["type"].endswith("/account-locked")
        right = await _sign_in(c, email, STRONG_PASSWORD)
        assert right.status_code == 401
        assert right.json()["type"].endswith("/account-locked")
        assert "locked" in right.json()["detail"]

    async with database.transaction() as session:
        user = (await session.execute(select(User).where(User.email == email))).scalar_one()
        assert user.locked_until is not None
        assert timedelta(minutes=29) < user.locked_until - utcnow() <= timedelta(minutes=30)
        locked = (
            await session.execute(
                select(AuditEntry).where(
                    AuditEntry.actor_id == user.id, AuditEntry.action == "auth.account_locked"
                )
            )
        ).scalars()
        assert [e.company_id for e in locked] == [owner.company_id]

    members = (await client.get("/api/v1/members", headers=owner.headers)).json()["members"]
    assert next(m for m in members if m["id"] == membership_id)["locked_until"] is not None

    # Only an owner unlocks: the member's own token cannot.
    refused = await client.post(
        f"/api/v1/members/{membership_id}/unlock",
        headers={"Authorization": f"Bearer {member_token}"},
    )
    assert refused.status_code == 403
    unlocked = await client.post(f"/api/v1/members/{membership_id}/unlock", headers=owner.headers)
    assert unlocked.status_code == 200, unlocked.text
    assert unlocked.json()["locked_until"] is None
    async with _client(app, _ip()) as c:
        assert (await _sign_in(c, email, STRONG_PASSWORD)).status_code == 200
    audit = (await client.get("/api/v1/audit-log", headers=owner.headers)).json()
    assert "member.unlocked" in str(audit)


async def test_a_lock_ends_by_itself_and_the_count_restarts_on_success(
    client: httpx.AsyncClient, app: Any, database: Database
) -> None:
    tenant = await register(client)
    async with _client(app, _ip()) as c:
        for _ in range(10):
            await _sign_in(c, tenant.email, "wrong-password-1")
        assert (await _sign_in(c, tenant.email, tenant.password)).status_code == 401
        async with database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE users SET locked_until = now() - interval '1 second' WHERE email = :e"
                ),
                {"e": tenant.email},
            )
        assert (await _sign_in(c, tenant.email, tenant.password)).status_code == 200
        # Nine more failures after a success do not lock.
        for _ in range(9):
            await _sign_in(c, tenant.email, "wrong-password-1")
        assert (await _sign_in(c, tenant.email, tenant.password)).status_code == 200


def test_a_bad_limit_setting_fails_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="PAYGATE_RATE_LIMIT_SIGN_IN_IP"):
        RateLimits(_tight(settings, sign_in_ip="lots"))


@pytest.fixture
async def redis_settings(settings: Settings) -> AsyncIterator[Settings]:
    redis = pytest.importorskip("redis.asyncio")
    probe = redis.Redis.from_url(REDIS_URL)
    try:
        await probe.ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    finally:
        await probe.aclose()
    shared = _tight(
        settings, sign_in_ip="3/minute", key_prefix=f"paygate-test-{secrets.token_hex(6)}"
    ).model_copy(update={"redis_url": REDIS_URL})
    yield shared
    await RateLimits(shared).reset()


async def test_limits_over_redis_are_shared_between_processes(
    redis_settings: Settings, database: Database
) -> None:
    first = create_app(redis_settings, database=database)
    second = create_app(redis_settings, database=database)  # another paygate process
    ip = _ip()
    async with _client(first, ip) as a, _client(second, ip) as b:
        assert (await _sign_in(a, "one@example.com", "wrong-password-1")).status_code == 401
        assert (await _sign_in(b, "two@example.com", "wrong-password-1")).status_code == 401
        assert (await _sign_in(a, "three@example.com", "wrong-password-1")).status_code == 401
        refused = await _sign_in(b, "four@example.com", "wrong-password-1")
        assert refused.status_code == 429
        assert int(refused.headers["Retry-After"]) >= 1
