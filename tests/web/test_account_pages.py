"""API keys, members and invitations, the audit log, and what a viewer may see."""

from __future__ import annotations

import re
from typing import Any

from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD
from tests.web.helpers import WebUser, csrf_of, new_client, sandbox_form


async def invite(owner: WebUser, email: str, role: str) -> str:
    response = await owner.post("/members/invite", {"email": email, "role": role}, page="/members")
    assert response.status_code == 200, response.text
    match = re.search(r'id="invite-link" class="mono" value="([^"]+)"', response.text)
    assert match, "the invite link is shown once"
    return match.group(1)


async def accept(app: Any, invite_url: str, password: str = STRONG_PASSWORD) -> WebUser:
    path = "/invite/" + invite_url.rsplit("/invite/", 1)[1]
    client = new_client(app)
    page = await client.get(path)
    assert page.status_code == 200, page.text
    response = await client.post(
        path, data={"password": password, "csrf_token": csrf_of(page.text)}
    )
    assert response.status_code == 303, response.text
    return WebUser(client, "", password, "")


def membership_of(html: str, email: str) -> str:
    match = re.search(
        rf'<label for="role-(mem_[A-Za-z0-9]+)" class="sr-only">Role of {re.escape(email)}<', html
    )
    assert match, email
    return match.group(1)


async def test_viewer_sees_no_write_actions(owner: WebUser, app: Any) -> None:
    await owner.post("/gateways", sandbox_form(name="Shared sandbox"))
    url = await invite(owner, "viewer@example.com", "viewer")
    viewer = await accept(app, url)
    try:
        page = (await viewer.client.get("/gateways")).text
        assert "Shared sandbox" in page
        assert "Invitation accepted" in page
        for write in (
            'role="switch"',
            "Add gateway",
            "Test connection",
            "/delete",
            "/edit",
            'id="add-gateway"',
        ):
            assert write not in page, write
        refused = await viewer.post("/gateways/new", {})
        assert refused.status_code in (403, 405)
        gateway_id = re.findall(r'id="gw-(gw_[A-Za-z0-9]+)"', page)[0]
        for action in ("disable", "test", "delete"):
            response = await viewer.post(f"/gateways/{gateway_id}/{action}")
            assert response.status_code == 403, action
        members = (await viewer.client.get("/members")).text
        assert "Invite someone" not in members
        assert "Remove" not in members
        keys = (await viewer.client.get("/api-keys")).text
        assert "Create a key" not in keys
    finally:
        await viewer.client.aclose()


async def test_invitation_for_an_existing_user_asks_for_their_password(
    owner: WebUser, rival: WebUser, app: Any
) -> None:
    url = await invite(owner, rival.email, "developer")
    path = "/invite/" + url.rsplit("/invite/", 1)[1]
    async with new_client(app) as client:
        page = await client.get(path)
        assert "Your paygate password" in page.text
        wrong = await client.post(
            path, data={"password": "Wrong-password-000", "csrf_token": csrf_of(page.text)}
        )
        assert wrong.status_code == 422
        assert "The password is wrong." in wrong.text
    bogus = await owner.client.get("/invite/pgi_not_a_real_token")
    assert bogus.status_code == 404
    assert "invalid, has expired" in bogus.text


async def test_members_change_role_remove_and_revoke(owner: WebUser, app: Any) -> None:
    url = await invite(owner, "dev@example.com", "developer")
    dev = await accept(app, url)
    await dev.client.aclose()
    page = (await owner.client.get("/members")).text
    mid = membership_of(page, "dev@example.com")
    changed = await owner.post(
        f"/members/{mid}/role", {"role": "admin"}, htmx=True, page="/members"
    )
    assert changed.status_code == 200
    assert re.search(rf'id="role-{mid}"[^>]*>.*?<option value="admin" selected', changed.text, re.S)
    # The last owner cannot step down: the refusal is shown, nothing changes.
    own = membership_of(page, owner.email)
    refused = await owner.post(
        f"/members/{own}/role", {"role": "viewer"}, htmx=True, page="/members"
    )
    assert "keeps at least one owner" in refused.text
    removed = await owner.post(f"/members/{mid}/remove", htmx=True, page="/members")
    assert "dev@example.com" not in removed.text.split("Pending invitations")[0]
    await invite(owner, "later@example.com", "viewer")
    page = (await owner.client.get("/members")).text
    invitation_id = re.search(r"/invitations/(ivt_[A-Za-z0-9]+)/revoke", page).group(1)
    revoked = await owner.post(f"/invitations/{invitation_id}/revoke", htmx=True, page="/members")
    assert "later@example.com" not in revoked.text


async def test_api_key_is_shown_once_and_can_be_revoked(owner: WebUser) -> None:
    created = await owner.post(
        "/api-keys", {"name": "Billing server", "scopes": ["gateways:read"]}, page="/api-keys"
    )
    assert created.status_code == 200
    key = re.search(r'id="new-key" class="mono" value="(pgk_[^"]+)"', created.text).group(1)
    assert "shown only this once" in created.text
    assert created.headers["cache-control"] == "no-store"
    works = await owner.client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {key}"})
    assert works.status_code == 200
    listing = (await owner.client.get("/api-keys")).text
    assert key not in listing
    assert key[:12] in listing
    assert "Billing server" in listing
    key_id = re.search(r"/api-keys/(key_[A-Za-z0-9]+)/revoke", listing).group(1)
    revoked = await owner.post(f"/api-keys/{key_id}/revoke", htmx=True, page="/api-keys")
    assert "Billing server" not in revoked.text.split("Active keys")[1].split("hx-swap-oob")[0]
    refused = await owner.client.get("/api/v1/gateways", headers={"Authorization": f"Bearer {key}"})
    assert refused.status_code == 401
    empty = await owner.post("/api-keys", {"name": ""}, htmx=True, page="/api-keys")
    assert empty.status_code == 422
    assert 'id="f-name-error"' in empty.text


async def test_audit_log_shows_who_what_and_the_diff(owner: WebUser) -> None:
    await owner.post("/gateways", sandbox_form(name="Audited"))
    page = (await owner.client.get("/gateways")).text
    gateway_id = re.findall(r'id="gw-(gw_[A-Za-z0-9]+)"', page)[0]
    await owner.post(
        f"/gateways/{gateway_id}/edit", sandbox_form(name="Audited again", priority="7")
    )
    audit = (await owner.client.get("/audit")).text
    assert "gateway.updated" in audit
    assert "gateway.created" in audit
    assert "account.registered" in audit
    assert owner.email in audit
    assert "198.51.100.20" in audit  # from where
    assert "<del>Audited</del>" in audit
    assert "<ins>Audited again</ins>" in audit
    # Successes are the rule and carry no badge; a failure or a denial is marked.
    assert "badge-outcome-success" not in audit
    filtered = (
        await owner.client.get(f"/audit?object_id={gateway_id}&action=gateway.updated")
    ).text
    assert '<code class="action">gateway.updated' in filtered
    assert '<code class="action">account.registered' not in filtered
    none = (await owner.client.get("/audit?action=nothing.like.this")).text
    assert "No matching entries" in none
    bad = (await owner.client.get("/audit?since=yesterday")).text
    assert "Enter a date as YYYY-MM-DD." in bad


async def test_audit_paging_links_to_older_entries(owner: WebUser) -> None:
    page = (await owner.client.get("/gateways")).text
    token = csrf_of(page)
    await owner.post("/gateways", sandbox_form())
    gateway_id = re.findall(
        r'id="gw-(gw_[A-Za-z0-9]+)"', (await owner.client.get("/gateways")).text
    )[0]
    for _ in range(26):
        await owner.client.post(f"/gateways/{gateway_id}/disable", data={"csrf_token": token})
        await owner.client.post(f"/gateways/{gateway_id}/enable", data={"csrf_token": token})
    first = (await owner.client.get("/audit")).text
    older = re.search(r'href="(/audit\?cursor=[^"]+)" rel="next"', first)
    assert older
    second = (await owner.client.get(older.group(1).replace("&amp;", "&"))).text
    assert "Newest" in second
    assert '<code class="action">account.registered' in second


async def test_guessing_a_password_on_an_invitation_page_locks_the_account(
    owner: WebUser, rival: WebUser, app: Any, settings: Settings
) -> None:
    # Globex's owner invites Acme's owner and tries passwords on the invitation page.
    url = await invite(rival, owner.email, "viewer")
    path = "/invite/" + url.rsplit("/invite/", 1)[1]
    async with new_client(app) as guesser:
        page = await guesser.get(path)
        for _ in range(settings.lockout_threshold):
            guess = await guesser.post(
                path, data={"password": "wrong-guess-123", "csrf_token": csrf_of(page.text)}
            )
            assert guess.status_code == 422
        assert "locked" in guess.text
        right = await guesser.post(
            path, data={"password": owner.password, "csrf_token": csrf_of(page.text)}
        )
        assert right.status_code == 422
        assert "locked" in right.text
        assert "pg_access" not in guesser.cookies
    async with new_client(app) as browser:
        login = await browser.get("/login")
        refused = await browser.post(
            "/login",
            data={
                "email": owner.email,
                "password": owner.password,
                "csrf_token": csrf_of(login.text),
            },
        )
        assert refused.status_code == 401
