"""Changing a password, resetting a forgotten one by email, and the lockout notice."""

from __future__ import annotations

import asyncio
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from argon2 import PasswordHasher
from sqlalchemy import select, text

from paygate.accounts.models import AuthSession, PasswordReset, User
from paygate.app import create_app
from paygate.db import Database
from paygate.security.passwords import needs_rehash, verify_password
from paygate.security.tokens import token_digest
from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD, Tenant, register
from tests.fakes.mail import Mailbox, body_of, link_in
from tests.fakes.servers import free_port

NEW_PASSWORD = "Quartz-Meadow-Pelican-77"


def _client(app: Any, ip: str = "192.0.2.77") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(ip, 42000))
    return httpx.AsyncClient(transport=transport, base_url="http://paygate.test")


async def _sign_in(client: httpx.AsyncClient, email: str, password: str) -> httpx.Response:
    return await client.post("/api/v1/auth/login", json={"email": email, "password": password})


def _bearer(tokens: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


async def _user(database: Database, email: str) -> User:
    async with database.transaction() as session:
        return (await session.execute(select(User).where(User.email == email))).scalar_one()


async def _audit(client: httpx.AsyncClient, tenant: Tenant, action: str) -> list[dict[str, Any]]:
    log = await client.get(
        "/api/v1/audit-log", params={"action": action, "limit": 50}, headers=tenant.headers
    )
    assert log.status_code == 200, log.text
    entries: list[dict[str, Any]] = log.json()["data"]
    return entries


def _token_of(link: str) -> str:
    return parse_qs(urlsplit(link).query)["token"][0]


async def _request_reset(client: httpx.AsyncClient, email: str) -> httpx.Response:
    return await client.post("/api/v1/auth/password-reset", json={"email": email})


async def _confirm(client: httpx.AsyncClient, token: str, password: str) -> httpx.Response:
    return await client.post(
        "/api/v1/auth/password-reset/confirm", json={"token": token, "new_password": password}
    )


# --- changing a password ------------------------------------------------------------------


async def test_change_password_ends_the_other_sessions_and_keeps_this_one(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    mailbox: Mailbox,
) -> None:
    laptop = (await _sign_in(client, tenant.email, tenant.password)).json()
    phone = (await _sign_in(client, tenant.email, tenant.password)).json()

    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": tenant.password, "new_password": NEW_PASSWORD},
        headers=_bearer(laptop),
    )
    assert changed.status_code == 204, changed.text

    # The old password no longer works; the new one does.
    assert (await _sign_in(client, tenant.email, tenant.password)).status_code == 401
    assert (await _sign_in(client, tenant.email, NEW_PASSWORD)).status_code == 200
    # This session goes on; the others (the phone, the sign-up session) are over.
    assert (await client.get("/api/v1/me", headers=_bearer(laptop))).status_code == 200
    assert (await client.get("/api/v1/me", headers=_bearer(phone))).status_code == 401
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
    refused = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": phone["refresh_token"]}
    )
    assert refused.status_code == 401
    kept = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": laptop["refresh_token"]}
    )
    assert kept.status_code == 200
    # The other company's owner is not touched.
    assert (await client.get("/api/v1/me", headers=other_tenant.headers)).status_code == 200

    user = await _user(database, tenant.email)
    assert verify_password(user.password_hash, NEW_PASSWORD)
    async with database.transaction() as session:
        reasons = (
            await session.execute(
                select(AuthSession.revoked_reason).where(AuthSession.user_id == user.id)
            )
        ).scalars()
        assert sorted(r or "open" for r in reasons) == [
            "open",
            "open",  # the sign-in with the new password just above
            "password_changed",
            "password_changed",
        ]

    # Audited in the company, without the password; the owner gets a notice by mail.
    owner = Tenant(**{**tenant.__dict__, "access_token": laptop["access_token"]})
    [entry] = await _audit(client, owner, "auth.password_changed")
    assert entry["outcome"] == "success"
    assert entry["changes"] == {"password": {"before": "[changed]", "after": "[changed]"}}
    assert entry["detail"] == "2 other sessions ended"
    [notice] = mailbox.wait_for(tenant.email)
    assert notice["Subject"] == "Your paygate password was changed"
    assert "203.0.113.7" in body_of(notice)
    for secret in (tenant.password, NEW_PASSWORD):
        assert secret not in str(entry)
        assert secret not in body_of(notice)


async def test_change_password_refuses_weak_and_wrong_and_says_why(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, mailbox: Mailbox
) -> None:
    weak = {
        "short": "Use at least 12 characters.",
        "password1234": "This is a very common password.",
        "acmeinvoicing2026": "built from your email or company name",
    }
    for password, reason in weak.items():
        refused = await client.post(
            "/api/v1/me/password",
            json={"current_password": tenant.password, "new_password": password},
            headers=tenant.headers,
        )
        assert refused.status_code == 422, password
        assert refused.headers["content-type"] == "application/problem+json"
        [error] = refused.json()["errors"]
        assert error["field"] == "new_password"
        assert reason in error["message"]
        assert password not in refused.text
    same = await client.post(
        "/api/v1/me/password",
        json={"current_password": tenant.password, "new_password": tenant.password},
        headers=tenant.headers,
    )
    assert same.status_code == 422
    assert same.json()["errors"][0]["message"].startswith("The new password is the same")

    wrong = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not-my-password-at-all", "new_password": NEW_PASSWORD},
        headers=tenant.headers,
    )
    assert wrong.status_code == 422
    assert wrong.json()["errors"] == [
        {
            "field": "current_password",
            "message": "The current password is wrong.",
            "code": "wrong_password",
        }
    ]
    # Nothing changed, and the wrong guess counts toward the sign-in lockout.
    user = await _user(database, tenant.email)
    assert verify_password(user.password_hash, tenant.password)
    assert user.failed_sign_ins == 1
    [failure] = await _audit(client, tenant, "auth.password_changed")
    assert (failure["outcome"], failure["detail"]) == ("failure", "wrong current password")
    assert mailbox.to(tenant.email) == []
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 200


async def test_guessing_the_current_password_locks_the_account(
    client: httpx.AsyncClient, database: Database, settings: Settings
) -> None:
    tenant = await register(client)
    for _ in range(settings.lockout_threshold - 1):
        wrong = await client.post(
            "/api/v1/me/password",
            json={"current_password": "a-wrong-guess-123", "new_password": NEW_PASSWORD},
            headers=tenant.headers,
        )
        assert wrong.status_code == 422
    locking = await client.post(
        "/api/v1/me/password",
        json={"current_password": "a-wrong-guess-123", "new_password": NEW_PASSWORD},
        headers=tenant.headers,
    )
    assert locking.status_code == 403
    assert locking.json()["type"].endswith("/account-locked")
    # Locked: even the right current password is refused now.
    right = await client.post(
        "/api/v1/me/password",
        json={"current_password": tenant.password, "new_password": NEW_PASSWORD},
        headers=tenant.headers,
    )
    assert right.status_code == 403
    assert (await _user(database, tenant.email)).locked_until is not None


async def test_an_api_key_cannot_change_a_password(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "server", "scopes": ["members:write", "members:read"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    key = {"Authorization": f"Bearer {created.json()['key']}"}

    refused = await client.post(
        "/api/v1/me/password",
        json={"current_password": tenant.password, "new_password": NEW_PASSWORD},
        headers=key,
    )
    assert refused.status_code == 403
    assert "API key" in refused.json()["detail"]
    assert verify_password((await _user(database, tenant.email)).password_hash, tenant.password)
    unauthenticated = await client.post(
        "/api/v1/me/password",
        json={"current_password": tenant.password, "new_password": NEW_PASSWORD},
    )
    assert unauthenticated.status_code == 401


async def test_sign_in_rehashes_a_hash_made_with_older_parameters(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    weak_hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    old_hash = weak_hasher.hash(tenant.password)
    assert needs_rehash(old_hash)
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE users SET password_hash = :h WHERE email = :e"),
            {"h": old_hash, "e": tenant.email},
        )

    assert (await _sign_in(client, tenant.email, tenant.password)).status_code == 200

    rehashed = (await _user(database, tenant.email)).password_hash
    assert rehashed != old_hash
    assert not needs_rehash(rehashed)
    assert verify_password(rehashed, tenant.password)


# --- resetting a forgotten password -----------------------------------------------------------


async def test_reset_by_emailed_link_sets_the_password_and_ends_every_session(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    settings: Settings,
    mailbox: Mailbox,
) -> None:
    asked = await _request_reset(client, tenant.email.upper())
    assert asked.status_code == 202
    [mail] = mailbox.wait_for(tenant.email)
    assert mail["Subject"] == "Reset your paygate password"
    link = link_in(mail)
    assert link.startswith(f"{settings.base_url}/reset-password?token=pgp_")
    token = _token_of(link)
    # Only the digest is stored.
    async with database.transaction() as session:
        [reset] = (await session.execute(select(PasswordReset))).scalars().all()[-1:]
        assert reset.token_digest == token_digest(token)
        assert reset.requested_ip == "203.0.113.7"
        assert reset.used_at is None
    ttl = timedelta(minutes=settings.password_reset_ttl_minutes)
    assert abs(reset.expires_at - reset.created_at - ttl) < timedelta(minutes=1)

    confirmed = await _confirm(client, token, NEW_PASSWORD)
    assert confirmed.status_code == 204, confirmed.text

    assert (await _sign_in(client, tenant.email, tenant.password)).status_code == 401
    signed_in = await _sign_in(client, tenant.email, NEW_PASSWORD)
    assert signed_in.status_code == 200
    # Every session from before the reset is over, the refresh tokens too.
    assert (await client.get("/api/v1/me", headers=tenant.headers)).status_code == 401
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert refresh.status_code == 401
    assert (await client.get("/api/v1/me", headers=other_tenant.headers)).status_code == 200

    # The link works once.
    again = await _confirm(client, token, "Another-Fine-Passphrase-9")
    assert again.status_code == 400
    assert again.json()["type"].endswith("/invalid-reset-token")

    [_, notice] = mailbox.wait_for(tenant.email, count=2)
    assert notice["Subject"] == "Your paygate password was changed"
    assert "reset by email link" in body_of(notice)
    owner = Tenant(**{**tenant.__dict__, "access_token": signed_in.json()["access_token"]})
    [entry] = await _audit(client, owner, "auth.password_reset")
    assert entry["actor_id"] == tenant.user_id
    assert entry["detail"] == "1 sessions ended"
    [requested] = await _audit(client, owner, "auth.password_reset_requested")
    assert requested["object_id"] == tenant.user_id
    assert token not in str(entry) + str(requested)


async def test_expired_and_superseded_links_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, mailbox: Mailbox
) -> None:
    await _request_reset(client, tenant.email)
    first = _token_of(link_in(mailbox.wait_for(tenant.email)[0]))
    await _request_reset(client, tenant.email)
    second = _token_of(link_in(mailbox.wait_for(tenant.email, count=2)[1]))
    assert first != second

    # Asking again voids the earlier link.
    superseded = await _confirm(client, first, NEW_PASSWORD)
    assert superseded.status_code == 400
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE password_resets SET expires_at = now() - interval '1 second'"
                " WHERE token_digest = :d"
            ),
            {"d": token_digest(second)},
        )
    expired = await _confirm(client, second, NEW_PASSWORD)
    assert expired.status_code == 400
    assert "expired" in expired.json()["detail"]
    assert (await _sign_in(client, tenant.email, tenant.password)).status_code == 200


async def test_a_weak_new_password_is_refused_and_the_link_still_works(
    client: httpx.AsyncClient, tenant: Tenant, mailbox: Mailbox
) -> None:
    await _request_reset(client, tenant.email)
    token = _token_of(link_in(mailbox.wait_for(tenant.email)[0]))

    weak = await _confirm(client, token, "acmeinvoicing2026")
    assert weak.status_code == 422
    [error] = weak.json()["errors"]
    assert error["field"] == "new_password"
    assert "built from your email or company name" in error["message"]
    assert (await _confirm(client, token, NEW_PASSWORD)).status_code == 204


async def test_an_unknown_email_gets_the_same_answer_and_no_mail(
    client: httpx.AsyncClient, tenant: Tenant, mailbox: Mailbox
) -> None:
    known = await _request_reset(client, tenant.email)
    mailbox.wait_for(tenant.email)
    nobody = f"nobody-{secrets.token_hex(4)}@example.com"
    unknown = await _request_reset(client, nobody)

    assert unknown.status_code == known.status_code == 202
    assert unknown.json() == known.json()
    assert unknown.headers["content-type"] == known.headers["content-type"]
    # The mail is sent before the in-process client sees the answer: none went out.
    assert mailbox.to(nobody) == []
    assert len(mailbox.messages) == 1


async def test_reset_requests_are_rate_limited_per_account_and_ip(
    client: httpx.AsyncClient, settings: Settings, database: Database, mailbox: Mailbox
) -> None:
    tenant = await register(client)
    tight = settings.model_copy(
        update={
            "rate_limit_password_reset_account": "2/hour",
            "rate_limit_password_reset_ip": "2/hour",
        }
    )
    app = create_app(tight, database=database)
    a, b, c = (_client(app, f"192.0.2.{n}") for n in (201, 202, 203))
    async with a, b, c:
        assert (await _request_reset(a, tenant.email)).status_code == 202
        assert (await _request_reset(b, tenant.email)).status_code == 202
        # A third request for the account, from a fresh address: the account limit.
        limited = await _request_reset(c, tenant.email)
        assert limited.status_code == 429
        assert limited.json()["type"].endswith("/rate-limited")
        assert int(limited.headers["Retry-After"]) >= 1
        # One address cannot ask about many accounts (known or not): the IP limit.
        nobody = f"nobody-{secrets.token_hex(4)}@example.com"
        assert (await _request_reset(a, nobody)).status_code == 202
        assert (await _request_reset(a, f"x-{nobody}")).status_code == 429
    assert len(mailbox.wait_for(tenant.email, count=2)) == 2


async def test_a_reset_lifts_the_lockout(
    client: httpx.AsyncClient, app: Any, database: Database, settings: Settings, mailbox: Mailbox
) -> None:
    tenant = await register(client)
    async with _client(app, f"192.0.2.{secrets.randbelow(100) + 100}") as guesser:
        for _ in range(settings.lockout_threshold):
            await _sign_in(guesser, tenant.email, "wrong-password-1")
        locked = await _sign_in(guesser, tenant.email, tenant.password)
        assert locked.json()["type"].endswith("/account-locked")

    await _request_reset(client, tenant.email)
    reset_mail = next(
        m for m in mailbox.wait_for(tenant.email, count=2) if "Reset" in str(m["Subject"])
    )
    assert (await _confirm(client, _token_of(link_in(reset_mail)), NEW_PASSWORD)).status_code == 204

    user = await _user(database, tenant.email)
    assert (user.failed_sign_ins, user.locked_until) == (0, None)
    assert (await _sign_in(client, tenant.email, NEW_PASSWORD)).status_code == 200


# --- the lockout notice ---------------------------------------------------------------------


async def _invite_member(client: httpx.AsyncClient, owner: Tenant) -> str:
    email = f"dev-{secrets.token_hex(4)}@example.com"
    invited = await client.post(
        "/api/v1/members", json={"email": email, "role": "developer"}, headers=owner.headers
    )
    token = invited.json()["invite_url"].rsplit("/", 1)[1]
    joined = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": STRONG_PASSWORD}
    )
    assert joined.status_code == 200, joined.text
    return email


async def test_a_lock_is_mailed_to_the_user_and_the_owners_of_their_company(
    client: httpx.AsyncClient,
    app: Any,
    other_tenant: Tenant,
    settings: Settings,
    mailbox: Mailbox,
) -> None:
    owner = await register(client)
    member = await _invite_member(client, owner)
    async with _client(app, "192.0.2.66") as guesser:
        for _ in range(settings.lockout_threshold - 1):
            await _sign_in(guesser, member, "wrong-password-1")
        assert mailbox.messages == []
        locking = await _sign_in(guesser, member, "wrong-password-1")
        assert locking.json()["type"].endswith("/account-locked")

    [to_member] = mailbox.wait_for(member)
    assert to_member["Subject"] == "Your paygate account is locked"
    assert "192.0.2.66" in body_of(to_member)
    assert "UTC" in body_of(to_member)
    [to_owner] = mailbox.wait_for(owner.email)
    assert str(to_owner["To"]) == owner.email  # one mail per person, no shared To: line
    body = body_of(to_owner)
    assert member in body
    assert owner.company_name in body
    assert "192.0.2.66" in body
    assert f"{settings.base_url}/members" in body
    assert "wrong-password-1" not in body
    # Another company's owner hears nothing; a refused sign-in while locked mails no one again.
    assert mailbox.to(other_tenant.email) == []
    async with _client(app, "192.0.2.66") as guesser:
        await _sign_in(guesser, member, "wrong-password-1")
    assert len(mailbox.messages) == 2


async def test_a_broken_mail_server_does_not_change_the_sign_in_answer(
    client: httpx.AsyncClient, settings: Settings, database: Database
) -> None:
    tenant = await register(client)
    no_mail = settings.model_copy(update={"smtp_port": free_port(), "smtp_timeout_seconds": 1.0})
    app = create_app(no_mail, database=database)
    async with _client(app, "192.0.2.67") as guesser:
        answers = [
            await _sign_in(guesser, tenant.email, "wrong-password-1")
            for _ in range(settings.lockout_threshold)
        ]
    assert [a.status_code for a in answers] == [401] * settings.lockout_threshold
    assert answers[-1].json()["type"].endswith("/account-locked")
    assert (await _user(database, tenant.email)).locked_until is not None


async def test_an_invitation_is_no_way_around_the_lockout(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    settings: Settings,
    mailbox: Mailbox,
) -> None:
    # Anyone can sign up and invite any address: Globex's owner invites Acme's owner and
    # guesses their password on the invitation, which must count like a failed sign-in.
    invited = await client.post(
        "/api/v1/members",
        json={"email": tenant.email, "role": "viewer"},
        headers=other_tenant.headers,
    )
    token = invited.json()["invite_url"].rsplit("/", 1)[1]
    answers = []
    for _ in range(settings.lockout_threshold):
        guess = await client.post(
            "/api/v1/invitations/accept", json={"token": token, "password": "wrong-guess-123"}
        )
        answers.append(guess.json()["type"].rsplit("/", 1)[1])
    assert answers[:-1] == ["invalid-credentials"] * (settings.lockout_threshold - 1)
    assert answers[-1] == "account-locked"
    # Locked now: the right password opens neither the invitation nor a sign-in.
    right = await client.post(
        "/api/v1/invitations/accept", json={"token": token, "password": tenant.password}
    )
    assert right.status_code == 401
    assert right.json()["type"].endswith("/account-locked")
    assert (await _sign_in(client, tenant.email, tenant.password)).status_code == 401
    members = (await client.get("/api/v1/members", headers=other_tenant.headers)).json()
    assert tenant.email not in {m["email"] for m in members["members"]}
    # The owner is told, and Acme's log shows the guesses (Globex's does not).
    [notice] = mailbox.wait_for(tenant.email)
    assert notice["Subject"] == "Your paygate account is locked"
    failures = await _audit(client, tenant, "auth.sign_in")
    assert len([e for e in failures if e["outcome"] == "failure"]) == settings.lockout_threshold
    assert await _audit(client, other_tenant, "auth.sign_in") == []


async def test_two_confirms_of_one_link_at_once_set_one_password(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    mailbox: Mailbox,
) -> None:
    await _request_reset(client, tenant.email)
    token = _token_of(link_in(mailbox.wait_for(tenant.email)[0]))
    first, second = "Quartz-Meadow-Pelican-77", "Harbor-Lantern-Violet-58"
    answers = await asyncio.gather(_confirm(client, token, first), _confirm(client, token, second))
    assert sorted(a.status_code for a in answers) == [204, 400]
    winner = first if answers[0].status_code == 204 else second
    user = await _user(database, tenant.email)
    assert verify_password(user.password_hash, winner)
    loser = second if winner == first else first
    assert (await _sign_in(client, tenant.email, loser)).status_code == 401
    async with database.transaction() as session:
        spent = (
            await session.execute(
                select(PasswordReset).where(PasswordReset.user_id == tenant.user_id)
            )
        ).scalar_one()
    assert spent.used_at is not None
    assert (await client.get("/api/v1/me", headers=other_tenant.headers)).status_code == 200
