"""Sign up, sign in, sign out, token rotation and CSRF, through the pages."""

from __future__ import annotations

import asyncio
from typing import Any

from tests.conftest import STRONG_PASSWORD, age_spent_refresh_tokens
from tests.web.helpers import WebUser, csrf_of, new_client, sign_up


async def test_sign_up_through_the_form_signs_in(app: Any) -> None:
    async with new_client(app) as client:
        user = await sign_up(client, "Initech Payments")
        cookies = client.cookies
        assert cookies.get("pg_access")
        assert cookies.get("pg_refresh")
        page = await client.get("/gateways")
        assert page.status_code == 200
        assert "Initech Payments" in page.text
        assert user.email in page.text
        assert "No gateways yet" in page.text
        assert "Gateway added" not in page.text
        # The welcome notice is flashed once.
        assert "Welcome to paygate" in page.text
        again = await client.get("/gateways")
        assert "Welcome to paygate" not in again.text
        home = await client.get("/")
        assert home.status_code == 303
        assert home.headers["location"] == "/overview"  # the home page of a signed-in user


async def test_session_cookies_are_http_only_and_same_site(app: Any) -> None:
    async with new_client(app) as client:
        page = await client.get("/signup")
        response = await client.post(
            "/signup",
            data={
                "email": "cookie-check@example.com",
                "password": STRONG_PASSWORD,
                "company_name": "Cookie Co",
                "csrf_token": csrf_of(page.text),
            },
        )
        set_cookies = response.headers.get_list("set-cookie")
        for name in ("pg_access", "pg_refresh", "pg_csrf"):
            header = next(h for h in set_cookies if h.startswith(f"{name}="))
            assert "HttpOnly" in header
            assert "SameSite=lax" in header or "samesite=lax" in header.lower()
            assert "Path=/" in header


async def test_password_rules_are_shown_next_to_the_password(app: Any) -> None:
    async with new_client(app) as client:
        page = await client.get("/signup")
        response = await client.post(
            "/signup",
            data={
                "email": "weak@example.com",
                "password": "short",
                "company_name": "Weak Co",
                "csrf_token": csrf_of(page.text),
            },
        )
        assert response.status_code == 422
        assert 'id="f-password-error"' in response.text
        assert "Use at least 12 characters." in response.text
        assert 'aria-invalid="true"' in response.text
        # What was typed stays, except the password.
        assert 'value="weak@example.com"' in response.text
        assert 'value="short"' not in response.text
        assert "pg_access" not in client.cookies


async def test_csrf_is_refused_without_the_token(app: Any) -> None:
    async with new_client(app) as client:
        await client.get("/signup")  # has the CSRF cookie, but sends no token
        data = {"email": "csrf@example.com", "password": STRONG_PASSWORD, "company_name": "Csrf Co"}
        response = await client.post("/signup", data=data)
        assert response.status_code == 403
        assert "text/html" in response.headers["content-type"]
        wrong = await client.post("/signup", data={**data, "csrf_token": "x" * 43})
        assert wrong.status_code == 403
        login = await client.post(
            "/login", data={"email": "csrf@example.com", "password": STRONG_PASSWORD}
        )
        assert login.status_code == 403
        # Nothing was created: signing in (with a token) fails.
        page = await client.get("/login")
        attempt = await client.post(
            "/login",
            data={
                "email": "csrf@example.com",
                "password": STRONG_PASSWORD,
                "csrf_token": csrf_of(page.text),
            },
        )
        assert attempt.status_code == 401
        assert "The email or password is wrong." in attempt.text


async def test_csrf_is_refused_for_htmx_and_cross_site_posts(owner: WebUser) -> None:
    token = await owner.csrf()
    no_header = await owner.client.post("/gateways/gw_x/test", headers={"HX-Request": "true"})
    assert no_header.status_code == 403
    assert "notice-error" in no_header.text
    cross_site = await owner.client.post(
        "/gateways/gw_x/test", headers={"X-CSRF-Token": token, "Sec-Fetch-Site": "cross-site"}
    )
    assert cross_site.status_code == 403
    # With the header, the request gets through to the (missing) gateway.
    with_header = await owner.client.post("/gateways/gw_x/test", headers={"X-CSRF-Token": token})
    assert with_header.status_code == 404


async def test_sign_out_ends_the_session(owner: WebUser) -> None:
    access = owner.client.cookies["pg_access"]
    response = await owner.post("/logout")
    assert response.status_code == 303
    assert response.headers["location"] == "/login"
    assert "pg_access" not in owner.client.cookies
    page = await owner.client.get("/gateways")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/gateways"
    # The old token was revoked on the server, not only forgotten by the browser.
    api = await owner.client.get("/api/v1/me", headers={"Authorization": f"Bearer {access}"})
    assert api.status_code == 401
    login = await owner.client.get("/login")
    assert "You are signed out." in login.text


async def test_sign_in_returns_to_the_page_asked_for(owner: WebUser, app: Any) -> None:
    async with new_client(app) as client:
        redirected = await client.get("/audit?action=auth.sign_in")
        assert redirected.status_code == 303
        assert redirected.headers["location"] == "/login?next=/audit%3Faction%3Dauth.sign_in"
        page = await client.get(redirected.headers["location"])
        response = await client.post(
            "/login",
            data={
                "email": owner.email,
                "password": owner.password,
                "next": "/audit?action=auth.sign_in",
                "csrf_token": csrf_of(page.text),
            },
        )
        assert response.status_code == 303
        assert response.headers["location"] == "/audit?action=auth.sign_in"


async def test_next_is_only_a_local_path(app: Any) -> None:
    async with new_client(app) as client:
        for target in (
            "https://evil.example/",
            "//evil.example/x",
            "/\\evil.example",
            "javascript:alert(1)",
        ):
            page = await client.get("/login", params={"next": target})
            assert 'name="next" value="/overview"' in page.text


async def test_expired_access_token_is_rotated_with_the_refresh_cookie(
    owner: WebUser, app: Any
) -> None:
    old_refresh = owner.client.cookies["pg_refresh"]
    owner.client.cookies.delete("pg_access")
    owner.client.cookies.set("pg_access", "not-a-valid-token", domain="paygate.test")
    page = await owner.client.get("/gateways")
    assert page.status_code == 200
    assert owner.email in page.text
    assert owner.client.cookies["pg_refresh"] != old_refresh
    assert owner.client.cookies["pg_access"] != "not-a-valid-token"
    # Past the race grace period, the spent refresh token fails (and ends that family).
    await age_spent_refresh_tokens(app.state.database)
    async with new_client(app) as other:
        other.cookies.set("pg_refresh", old_refresh, domain="paygate.test")
        again = await asyncio.wait_for(other.get("/gateways"), 20)
        assert again.status_code == 303
        assert again.headers["location"] == "/login?next=/gateways"


async def test_htmx_request_when_signed_out_redirects_the_whole_page(app: Any) -> None:
    async with new_client(app) as client:
        response = await client.get(
            "/gateways/new",
            headers={"HX-Request": "true", "HX-Current-URL": "http://paygate.test/gateways"},
        )
        assert response.status_code == 200
        assert response.headers["HX-Redirect"] == "/login?next=/gateways"
