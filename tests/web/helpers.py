"""Driving the pages the way a browser does: cookies, CSRF tokens from the forms, form posts."""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from tests.conftest import STRONG_PASSWORD

CSRF_INPUT = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF_INPUT.search(html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def new_client(app: Any) -> httpx.AsyncClient:
    """A browser of its own: a separate cookie jar."""
    transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://paygate.test")


@dataclass
class WebUser:
    client: httpx.AsyncClient
    email: str
    password: str
    company_name: str

    async def csrf(self, path: str = "/gateways") -> str:
        response = await self.client.get(path)
        assert response.status_code == 200, response.text
        return csrf_of(response.text)

    async def post(
        self,
        path: str,
        data: dict[str, Any] | None = None,
        *,
        htmx: bool = False,
        page: str = "/gateways",
    ) -> httpx.Response:
        token = await self.csrf(page)
        headers = {"HX-Request": "true", "X-CSRF-Token": token} if htmx else {}
        return await self.client.post(
            path, data={**(data or {}), "csrf_token": token}, headers=headers
        )

    @property
    def bearer(self) -> dict[str, str]:
        """The page session's access token works for the JSON API too (same tokens)."""
        return {"Authorization": f"Bearer {self.client.cookies['pg_access']}"}


async def sign_up(client: httpx.AsyncClient, company_name: str | None = None) -> WebUser:
    suffix = secrets.token_hex(4)
    company_name = company_name or f"Web Co {suffix}"
    email = f"web-{suffix}@example.com"
    page = await client.get("/signup")
    assert page.status_code == 200
    response = await client.post(
        "/signup",
        data={
            "email": email,
            "password": STRONG_PASSWORD,
            "company_name": company_name,
            "csrf_token": csrf_of(page.text),
        },
    )
    assert response.status_code == 303, response.text
    assert response.headers["location"] == "/gateways"
    return WebUser(client, email, STRONG_PASSWORD, company_name)


def sandbox_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "gateway_type": "sandbox",
        "name": "Sandbox",
        "environment": "test",
        "supported_currencies": "USD, EUR",
        "min_amount": "",
        "max_amount": "",
        "priority": "100",
        "payment_method_types": ["card"],
    }
    data.update(overrides)
    return data


def stripe_form(secret_key: str, base_url: str = "", **overrides: Any) -> dict[str, Any]:
    data = sandbox_form(gateway_type="stripe", name="Stripe")
    data.update(
        {
            "configuration.secret_key": secret_key,
            "configuration.publishable_key": "pk_test_" + "a" * 24,
            "configuration.webhook_secret": "whsec_" + "b" * 32,
            "configuration.api_base_url": base_url,
        }
    )
    data.update(overrides)
    return data
