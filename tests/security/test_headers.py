"""Security headers on every answer, the payment page's own CSP, and CORS for /api/."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import text

from paygate.app import create_app
from paygate.db import Database
from paygate.settings import Mode, Settings
from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway, stripe_payload
from tests.payments.helpers import create_invoice, sandbox_gateway
from tests.web.helpers import WebUser, new_client, sign_up

LISTED = "https://shop.example.com"
BASE_DIRECTIVES = {
    "default-src": "'none'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "form-action": "'self'",
    "frame-ancestors": "'none'",
    "base-uri": "'none'",
    "object-src": "'none'",
}


def csp(response: httpx.Response) -> dict[str, str]:
    header = response.headers["content-security-policy"]
    directives = {}
    for part in header.split(";"):
        name, _, sources = part.strip().partition(" ")
        directives[name] = sources
    return directives


def assert_secure(response: httpx.Response, *, hsts: bool = False) -> None:
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"
    policy = csp(response)
    assert "'unsafe-inline'" not in policy["script-src"]
    assert "'unsafe-eval'" not in policy["script-src"]
    assert policy["default-src"] == "'none'"
    assert ("strict-transport-security" in response.headers) is hsts
    assert "access-control-allow-origin" not in response.headers


async def client_for(app: Any) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 50000))
    return httpx.AsyncClient(transport=transport, base_url="http://paygate.test")


@pytest.fixture
async def owner(app: Any) -> AsyncIterator[WebUser]:
    async with new_client(app) as c:
        yield await sign_up(c, "Headers Web")


@pytest.fixture
async def cors_client(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings.model_copy(update={"cors_origins": [LISTED]}), database=database)
    async with await client_for(app) as c:
        yield c


async def test_every_page_and_api_answer_carries_the_headers(
    client: httpx.AsyncClient, tenant: Tenant, owner: WebUser
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    answers = [
        await client.get("/login"),
        await owner.client.get("/gateways"),
        await client.get(urlsplit(str(invoice["pay_url"])).path),
        await client.get("/api/v1/me", headers=tenant.headers),
        await client.get("/api/v1/me"),  # 401 problem
        await client.get("/nowhere"),  # 404
        await client.get("/static/app.js"),
        await client.get("/healthz"),
        await client.get("/api/openapi.json"),
    ]
    for response in answers:
        assert response.status_code in (200, 401, 404), response.request.url
        assert_secure(response)
        assert response.headers["x-frame-options"] == "DENY"
    assert csp(answers[0]) == BASE_DIRECTIVES
    assert csp(answers[1]) == BASE_DIRECTIVES
    # Pages are also never cached, and the old per-page headers are not doubled.
    assert answers[1].headers.get_list("x-content-type-options") == ["nosniff"]
    assert answers[1].headers["cache-control"] == "no-store"


async def test_the_api_docs_are_served_by_paygate_under_the_pages_policy(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/api/docs")
    assert response.status_code == 200
    assert_secure(response)
    # The same policy as every page: no CDN, no inline script, no hash exception.
    assert csp(response) == BASE_DIRECTIVES
    assert "<script>" not in response.text
    assets = re.findall(r'(?:src|href)="(/static/[^"]+)"', response.text)
    assert "/static/vendor/swagger-ui/swagger-ui-bundle.js" in assets
    for asset in assets:
        served = await client.get(asset)
        assert served.status_code == 200, asset  # `make setup` installed it from npm


async def test_hsts_only_in_production(settings: Settings, database: Database) -> None:
    for mode, expected in ((Mode.DEVELOPMENT, False), (Mode.TEST, False), (Mode.PRODUCTION, True)):
        app = create_app(settings.model_copy(update={"mode": mode}), database=database)
        async with await client_for(app) as c:
            for path in ("/login", "/api/v1/me", "/healthz"):
                response = await c.get(path)
                assert_secure(response, hsts=expected)
                if expected:
                    hsts = response.headers["strict-transport-security"]
                    assert "max-age=63072000" in hsts


async def test_the_pay_page_allows_the_stripe_js_of_its_gateways_and_nothing_else(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    invoice = await create_invoice(client, tenant)
    path = urlsplit(str(invoice["pay_url"])).path
    await sandbox_gateway(client, tenant)
    # A rival's Stripe gateway never widens this company's page.
    await create_gateway(client, other_tenant, stripe_payload("http://127.0.0.1:7"))

    sandbox_only = await client.get(path)
    assert csp(sandbox_only) == BASE_DIRECTIVES

    await create_gateway(client, tenant, stripe_payload("http://127.0.0.1:9"))
    page = await client.get(path)
    assert 'data-stripe-js="http://127.0.0.1:9/js.stripe.com/v3/"' in page.text
    assert_secure(page)
    expected = dict(BASE_DIRECTIVES)
    expected["script-src"] = "'self' http://127.0.0.1:9"
    expected["connect-src"] = "'self' http://127.0.0.1:9"
    assert csp(page) == expected
    assert page.headers["x-frame-options"] == "DENY"

    # Other pages keep the base policy.
    assert csp(await client.get("/login")) == BASE_DIRECTIVES


async def test_real_stripe_js_gets_what_stripe_documents(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    payload = stripe_payload("http://unused")
    del payload["configuration"]["api_base_url"]
    await create_gateway(client, tenant, payload)
    invoice = await create_invoice(client, tenant)
    page = await client.get(urlsplit(str(invoice["pay_url"])).path)
    policy = csp(page)
    assert policy["script-src"] == "'self' https://js.stripe.com"
    assert policy["connect-src"] == "'self' https://api.stripe.com"
    assert policy["frame-src"] == "https://js.stripe.com https://hooks.stripe.com"


async def test_no_cors_headers_by_default(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/api/v1/me", headers={**tenant.headers, "Origin": LISTED})
    assert response.status_code == 200
    assert not [h for h in response.headers if h.startswith("access-control-")]
    assert "origin" not in response.headers.get("vary", "").lower()
    preflight = await client.options(
        "/api/v1/me",
        headers={"Origin": LISTED, "Access-Control-Request-Method": "GET"},
    )
    assert preflight.status_code == 403
    assert not [h for h in preflight.headers if h.startswith("access-control-")]


async def test_cors_only_for_listed_origins(
    cors_client: httpx.AsyncClient, client: httpx.AsyncClient, tenant: Tenant
) -> None:
    listed = await cors_client.get("/api/v1/me", headers={**tenant.headers, "Origin": LISTED})
    assert listed.status_code == 200
    assert listed.headers["access-control-allow-origin"] == LISTED
    assert "access-control-allow-credentials" not in listed.headers
    assert "Origin" in listed.headers["vary"]

    other = await cors_client.get(
        "/api/v1/me", headers={**tenant.headers, "Origin": "https://evil.example.com"}
    )
    assert "access-control-allow-origin" not in other.headers
    assert "Origin" in other.headers["vary"]

    # Pages are not the API: no CORS there, whatever the origin.
    page = await cors_client.get("/login", headers={"Origin": LISTED})
    assert "access-control-allow-origin" not in page.headers

    preflight = await cors_client.options(
        "/api/v1/invoices",
        headers={
            "Origin": LISTED,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == LISTED
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "Authorization" in preflight.headers["access-control-allow-headers"]
    assert "access-control-allow-credentials" not in preflight.headers
    assert_secure_preflight = preflight.headers["x-content-type-options"] == "nosniff"
    assert assert_secure_preflight

    refused = await cors_client.options(
        "/api/v1/invoices",
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers


def test_cors_origins_are_validated() -> None:
    settings = Settings(cors_origins="https://A.example.com/, http://localhost:3000")  # type: ignore[arg-type]
    assert settings.cors_origins == ["https://a.example.com", "http://localhost:3000"]
    assert Settings().cors_origins == []
    for bad in ("*", "https://a.example.com/path", "ftp://a.example.com", "a.example.com"):
        with pytest.raises(ValueError, match="origin"):
            Settings(cors_origins=[bad])


async def test_frame_ancestors_per_company(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    await sandbox_gateway(client, tenant)
    await sandbox_gateway(client, other_tenant)
    ours = urlsplit(str((await create_invoice(client, tenant))["pay_url"])).path
    theirs = urlsplit(str((await create_invoice(client, other_tenant))["pay_url"])).path
    assert csp(await client.get(ours))["frame-ancestors"] == "'none'"

    set_origins = await client.put(
        "/api/v1/company/embed-origins",
        json={"origins": ["https://Shop.Example.com/", "https://shop.example.com"]},
        headers=tenant.headers,
    )
    assert set_origins.status_code == 200, set_origins.text
    assert set_origins.json() == {"origins": ["https://shop.example.com"]}

    page = await client.get(ours)
    assert csp(page)["frame-ancestors"] == "'self' https://shop.example.com"
    assert "x-frame-options" not in page.headers
    # Only the payment page of that company, never another company's, nor the app.
    assert csp(await client.get(theirs))["frame-ancestors"] == "'none'"
    assert csp(await client.get("/login"))["frame-ancestors"] == "'none'"

    async with database.transaction() as session:
        entries = (
            await session.execute(
                text(
                    "SELECT changes FROM audit_entries WHERE company_id = :c"
                    " AND action = 'company.embed_origins_changed'"
                ),
                {"c": tenant.company_id},
            )
        ).all()
    assert len(entries) == 1

    cleared = await client.put(
        "/api/v1/company/embed-origins", json={"origins": []}, headers=tenant.headers
    )
    assert cleared.status_code == 200
    assert csp(await client.get(ours))["frame-ancestors"] == "'none'"


async def test_embed_origins_are_validated_and_owner_only(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    for bad in (["http://shop.example.com"], ["*"], ["https://a.example.com/x"], ["x"] * 11):
        response = await client.put(
            "/api/v1/company/embed-origins", json={"origins": bad}, headers=tenant.headers
        )
        assert response.status_code in (400, 422), (bad, response.text)
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "Everything", "scopes": ["members:write", "gateways:write"]},
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    key = created.json()["key"]
    refused = await client.put(
        "/api/v1/company/embed-origins",
        json={"origins": ["https://shop.example.com"]},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert refused.status_code == 403
