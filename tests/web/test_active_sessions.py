"""The Active sessions page and the owners' "End sessions" action on the members page."""

from __future__ import annotations

import re
import secrets
from typing import Any

from tests.web.helpers import WebUser, csrf_of, new_client
from tests.web.test_account_pages import accept, invite, membership_of


async def sign_in_elsewhere(app: Any, user: WebUser) -> WebUser:
    """The same person signing in from a second browser."""
    client = new_client(app)
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={"email": user.email, "password": user.password, "csrf_token": csrf_of(page.text)},
        headers={"User-Agent": "SecondBrowser/2.0"},
    )
    assert response.status_code == 303, response.text
    return WebUser(client, user.email, user.password, user.company_name)


async def session_ids(user: WebUser) -> tuple[str, list[str]]:
    """(the current session, the others), as the API tells this browser's session."""
    listed = (await user.client.get("/api/v1/sessions", headers=user.bearer)).json()
    return next(s["id"] for s in listed if s["current"]), [
        s["id"] for s in listed if not s["current"]
    ]


async def test_end_another_browsers_session_then_your_own(
    owner: WebUser, rival: WebUser, app: Any
) -> None:
    laptop = await sign_in_elsewhere(app, owner)
    current, others = await session_ids(owner)
    laptop_session, _ = await session_ids(laptop)
    assert others == [laptop_session]

    page = await owner.client.get("/account/sessions")
    assert page.status_code == 200
    assert 'href="/account/sessions"' in page.text  # in the account menu
    assert "SecondBrowser/2.0" in page.text
    assert "this session" in page.text
    assert f"/account/sessions/{laptop_session}/end" in page.text
    assert "<script>" not in page.text

    # A form without this browser's CSRF token changes nothing.
    forged = await owner.client.post(
        f"/account/sessions/{laptop_session}/end", data={"csrf_token": "x" * 40}
    )
    assert forged.status_code == 403
    assert (await laptop.client.get("/gateways")).status_code == 200

    ended = await owner.post(
        f"/account/sessions/{laptop_session}/end", htmx=True, page="/account/sessions"
    )
    assert ended.status_code == 200
    assert "Session ended." in ended.text
    assert laptop_session not in ended.text
    # The laptop is signed out: its tokens no longer work, nor does its refresh.
    laptop_page = await laptop.client.get("/gateways")
    assert laptop_page.status_code == 303
    assert laptop_page.headers["location"].startswith("/login")

    # The rival company cannot end this company's sessions.
    assert (
        await rival.post(f"/account/sessions/{current}/end", page="/account/sessions")
    ).status_code == 404

    # Ending the session in use signs this browser out.
    old_token = owner.bearer
    signed_out = await owner.post(f"/account/sessions/{current}/end", page="/account/sessions")
    assert signed_out.status_code == 303
    assert signed_out.headers["location"] == "/login"
    assert "pg_access" not in owner.client.cookies
    assert (await owner.client.get("/api/v1/me", headers=old_token)).status_code == 401
    await laptop.client.aclose()


async def test_end_all_other_sessions(owner: WebUser, app: Any) -> None:
    phone = await sign_in_elsewhere(app, owner)
    tablet = await sign_in_elsewhere(app, owner)
    response = await owner.post("/account/sessions/end-others", page="/account/sessions")
    assert response.status_code == 303
    page = await owner.client.get("/account/sessions")
    assert "Every other session ended." in page.text
    assert "SecondBrowser/2.0" not in page.text
    for other in (phone, tablet):
        assert (await other.client.get("/gateways")).status_code == 303
        await other.client.aclose()
    assert (await owner.client.get("/gateways")).status_code == 200


async def test_an_owner_ends_a_members_sessions_from_the_members_page(
    owner: WebUser, rival: WebUser, app: Any
) -> None:
    email = f"ops-{secrets.token_hex(4)}@example.com"
    member = await accept(app, await invite(owner, email, "developer"))
    assert (await member.client.get("/gateways")).status_code == 200

    members_page = await owner.client.get("/members")
    membership = membership_of(members_page.text, email)
    assert f"/members/{membership}/end-sessions" in members_page.text
    assert f'aria-label="End sessions of {email}"' in members_page.text

    # Another company's owner: as if the member did not exist.
    foreign = await rival.post(f"/members/{membership}/end-sessions", page="/members")
    assert foreign.status_code == 404
    assert (await member.client.get("/gateways")).status_code == 200

    ended = await owner.post(f"/members/{membership}/end-sessions", htmx=True, page="/members")
    assert ended.status_code == 200
    assert "Sessions ended." in ended.text
    member_page = await member.client.get("/gateways")
    assert member_page.status_code == 303
    assert member_page.headers["location"].startswith("/login")
    # The owner is still signed in, and the member still a member.
    assert email in (await owner.client.get("/members")).text
    await member.client.aclose()


async def test_members_without_members_write_see_no_end_sessions_action(
    owner: WebUser, app: Any
) -> None:
    email = f"viewer-{secrets.token_hex(4)}@example.com"
    viewer = await accept(app, await invite(owner, email, "viewer"))
    page = await viewer.client.get("/members")
    assert page.status_code == 200
    assert "end-sessions" not in page.text
    own_membership = re.search(
        r"/members/(mem_[A-Za-z0-9]+)/", (await owner.client.get("/members")).text
    )
    assert own_membership
    refused = await viewer.post(
        f"/members/{own_membership.group(1)}/end-sessions", page="/account/sessions"
    )
    assert refused.status_code == 403
    assert (await owner.client.get("/gateways")).status_code == 200
    await viewer.client.aclose()


async def test_the_sessions_page_needs_a_signed_in_user(app: Any) -> None:
    async with new_client(app) as client:
        response = await client.get("/account/sessions")
        assert response.status_code == 303
        assert response.headers["location"].startswith("/login")
