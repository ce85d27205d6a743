"""The password pages: change it on the account page, reset it from the sign-in page."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import text

from paygate.db import Database
from tests.fakes.mail import Mailbox, link_in
from tests.web.helpers import WebUser, csrf_of, new_client, sign_up

NEW_PASSWORD = "Quartz-Meadow-Pelican-77"


async def _sign_in(client: Any, email: str, password: str) -> Any:
    page = await client.get("/login")
    return await client.post(
        "/login", data={"email": email, "password": password, "csrf_token": csrf_of(page.text)}
    )


def _field_error(html: str, name: str) -> str:
    match = re.search(rf'<p class="field-error" id="f-{name}-error">([^<]+)</p>', html)
    assert match, f"no error shown for {name}"
    return match.group(1)


async def test_change_password_on_the_account_page(owner: WebUser, app: Any) -> None:
    async with new_client(app) as other_browser:
        assert (await _sign_in(other_browser, owner.email, owner.password)).status_code == 303
        page = await owner.client.get("/account")
        assert page.status_code == 200
        assert "Change password" in page.text
        assert 'href="/account"' in page.text  # the account menu links to it

        wrong = await owner.post(
            "/account/password",
            {"current_password": "not-my-password-1", "new_password": NEW_PASSWORD},
            page="/account",
        )
        assert wrong.status_code == 422
        assert _field_error(wrong.text, "current_password") == "The current password is wrong."

        weak = await owner.post(
            "/account/password",
            {"current_password": owner.password, "new_password": "acmeweb2026acme"},
            page="/account",
        )
        assert weak.status_code == 422
        assert "built from your email or company name" in _field_error(weak.text, "new_password")
        assert "acmeweb2026acme" not in weak.text

        done = await owner.post(
            "/account/password",
            {"current_password": owner.password, "new_password": NEW_PASSWORD},
            page="/account",
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/account"
        shown = await owner.client.get("/account")
        assert "Password changed" in shown.text
        # This browser stays signed in; the other one is signed out.
        assert (await owner.client.get("/gateways")).status_code == 200
        away = await other_browser.get("/gateways")
        assert away.status_code == 303
        assert away.headers["location"].startswith("/login")
    async with new_client(app) as fresh:
        assert (await _sign_in(fresh, owner.email, owner.password)).status_code == 401
        assert (await _sign_in(fresh, owner.email, NEW_PASSWORD)).status_code == 303


async def test_the_password_form_needs_its_csrf_token(owner: WebUser, app: Any) -> None:
    refused = await owner.client.post(
        "/account/password",
        data={"current_password": owner.password, "new_password": NEW_PASSWORD},
    )
    assert refused.status_code == 403
    assert "This form has expired" in refused.text
    async with new_client(app) as fresh:
        assert (await _sign_in(fresh, owner.email, owner.password)).status_code == 303


async def test_forgot_password_mail_link_and_new_password(
    app: Any, mailbox: Mailbox, database: Database
) -> None:
    async with new_client(app) as browser:
        user = await sign_up(browser, "Forgetful Co")
        await browser.post("/logout", data={"csrf_token": await user.csrf()})
    async with new_client(app) as browser:
        login = await browser.get("/login")
        assert 'href="/forgot-password"' in login.text
        form = await browser.get("/forgot-password")
        assert form.status_code == 200
        sent = await browser.post(
            "/forgot-password", data={"email": user.email, "csrf_token": csrf_of(form.text)}
        )
        assert sent.status_code == 200
        assert "Check your mail" in sent.text

        link = link_in(mailbox.wait_for(user.email)[0])
        parts = urlsplit(link)
        assert parts.path == "/reset-password"
        reset_page = await browser.get(f"{parts.path}?{parts.query}")
        assert reset_page.status_code == 200
        assert user.email in reset_page.text
        token = parts.query.removeprefix("token=")
        assert f'name="token" value="{token}"' in reset_page.text

        weak = await browser.post(
            "/reset-password",
            data={
                "token": token,
                "new_password": "password1234",
                "csrf_token": csrf_of(reset_page.text),
            },
        )
        assert weak.status_code == 422
        assert "very common password" in _field_error(weak.text, "new_password")

        done = await browser.post(
            "/reset-password",
            data={"token": token, "new_password": NEW_PASSWORD, "csrf_token": csrf_of(weak.text)},
        )
        assert done.status_code == 303
        assert done.headers["location"] == "/login"
        signed_out = await browser.get("/login")
        assert "Sign in with your new password" in signed_out.text
        assert (await _sign_in(browser, user.email, NEW_PASSWORD)).status_code == 303

        # The link worked once.
        used = await browser.get(f"{parts.path}?{parts.query}")
        assert used.status_code == 400
        assert "no longer works" in used.text
        assert 'href="/forgot-password"' in used.text


async def test_forgot_password_answers_the_same_for_an_unknown_address(
    app: Any, mailbox: Mailbox
) -> None:
    async with new_client(app) as browser:
        form = await browser.get("/forgot-password")
        sent = await browser.post(
            "/forgot-password",
            data={"email": "no-such-person@example.com", "csrf_token": csrf_of(form.text)},
        )
        assert sent.status_code == 200
        assert "Check your mail" in sent.text
        assert mailbox.messages == []
        no_csrf = await browser.post("/forgot-password", data={"email": "x@example.com"})
        assert no_csrf.status_code == 403
        bad = await browser.get("/reset-password?token=pgp_made-up")
        assert bad.status_code == 400


async def test_an_owner_unlocks_a_locked_member_from_the_members_page(
    owner: WebUser, app: Any, database: Database, mailbox: Mailbox
) -> None:
    async with new_client(app) as browser:
        member = await sign_up(browser, "Member's Own Co")
    invite_page = await owner.post(
        "/members/invite", {"email": member.email, "role": "developer"}, page="/members"
    )
    url = re.search(r'id="invite-link" class="mono" value="([^"]+)"', invite_page.text)
    assert url
    async with new_client(app) as browser:
        path = "/invite/" + url.group(1).rsplit("/invite/", 1)[1]
        page = await browser.get(path)
        joined = await browser.post(
            path, data={"password": member.password, "csrf_token": csrf_of(page.text)}
        )
        assert joined.status_code == 303
    async with new_client(app) as browser:
        for _ in range(10):
            await _sign_in(browser, member.email, "wrong-password-1")
        locked = await _sign_in(browser, member.email, member.password)
        assert locked.status_code == 401
        assert "locked" in locked.text
    # The lock was mailed to the member and to the owner (through the sign-in page too).
    mailbox.wait_for(member.email)
    [notice] = mailbox.wait_for(owner.email)
    assert member.email in str(notice["Subject"])

    members = await owner.client.get("/members")
    assert f"Unlock {member.email}" in members.text
    membership = re.search(
        rf'action="/members/(mem_[A-Za-z0-9]+)/unlock"[^>]*>\s*<input[^>]*>\s*'
        rf'<button[^>]*aria-label="Unlock {re.escape(member.email)}"',
        members.text,
    )
    assert membership
    unlocked = await owner.post(f"/members/{membership.group(1)}/unlock", page="/members")
    assert unlocked.status_code == 303
    assert f"Unlock {member.email}" not in (await owner.client.get("/members")).text
    async with new_client(app) as browser:
        assert (await _sign_in(browser, member.email, member.password)).status_code == 303
    async with database.transaction() as session:
        count = await session.execute(
            text("SELECT count(*) FROM audit_entries WHERE action = 'member.unlocked'")
        )
        assert count.scalar_one() >= 1
