"""Outside development an endpoint must be https at a public address: checked when it is
saved and again, by the guarded transport, on every delivery (DNS rebinding)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest

from paygate.app import create_app
from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from paygate.security.ssrf import PRIVATE_ADDRESS
from paygate.settings import Settings
from paygate.webhooks.outbound.dispatch import Dispatcher
from tests.conftest import Tenant
from tests.webhooks.outbound.conftest import create_endpoint, delivery, run_jobs, send_test
from tests.webhooks.outbound.receiver import Receiver

NAMES = {
    "hooks.example.com": ["93.184.216.34"],
    "metadata.example.net": ["169.254.169.254"],
    "split.example.net": ["93.184.216.34", "10.0.0.7"],
}


async def fake_resolver(host: str) -> Sequence[str]:
    if host not in NAMES:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return NAMES[host]


async def rebound(host: str) -> Sequence[str]:
    return ["127.0.0.1"]


def guarded(settings: Settings) -> Settings:
    return settings.model_copy(update={"webhook_endpoints_reach_private_addresses": False})


@pytest.fixture
async def production_like(settings: Settings, database: Database) -> AsyncIterator[Any]:
    app = create_app(guarded(settings), database=database)
    app.state.outbound_resolver = fake_resolver
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://paygate.test"
    ) as client:
        yield client


def test_private_addresses_are_a_development_allowance(settings: Settings) -> None:
    assert settings.private_addresses_for_webhook_endpoints is True  # mode "test"
    assert guarded(settings).private_addresses_for_webhook_endpoints is False


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://hooks.example.com/in", "must use https"),
        ("https://127.0.0.1/in", PRIVATE_ADDRESS),
        ("https://10.1.2.3:8443/in", PRIVATE_ADDRESS),
        ("https://169.254.169.254/latest/meta-data/", PRIVATE_ADDRESS),
        ("https://[::1]/in", PRIVATE_ADDRESS),
        ("https://0x7f.1/in", PRIVATE_ADDRESS),
        ("https://metadata.example.net/in", PRIVATE_ADDRESS),
        ("https://split.example.net/in", PRIVATE_ADDRESS),
        ("https://nowhere.example.org/in", "has a host name that does not resolve"),
    ],
)
async def test_unsafe_urls_are_refused_outside_development(
    production_like: httpx.AsyncClient, tenant: Tenant, url: str, reason: str
) -> None:
    response = await production_like.post(
        "/api/v1/webhook-endpoints",
        json={"url": url, "event_types": ["invoice.paid"]},
        headers=tenant.headers,
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["errors"] == [{"field": "url", "message": reason, "code": "unsafe_url"}]
    assert (
        await production_like.get("/api/v1/webhook-endpoints", headers=tenant.headers)
    ).json() == []


async def test_a_public_https_url_is_saved_and_a_change_is_checked_too(
    production_like: httpx.AsyncClient, tenant: Tenant
) -> None:
    created = await create_endpoint(production_like, tenant, "https://hooks.example.com/in")
    changed = await production_like.patch(
        f"/api/v1/webhook-endpoints/{created['id']}",
        json={"url": "https://169.254.169.254/"},
        headers=tenant.headers,
    )
    assert changed.status_code == 422
    shown = await production_like.get(
        f"/api/v1/webhook-endpoints/{created['id']}", headers=tenant.headers
    )
    assert shown.json()["url"] == "https://hooks.example.com/in"


async def test_every_delivery_is_checked_again(
    client: httpx.AsyncClient,
    production_like: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    jobs: JobContext,
) -> None:
    """An endpoint saved where private addresses were allowed, and a name that resolved to a
    public address when saved and to 127.0.0.1 now: neither request is sent."""
    local = await create_endpoint(client, tenant, receiver.url())
    rebinding = await create_endpoint(production_like, tenant, "https://hooks.example.com/in")
    strict = Dispatcher(database, jobs.keyring, guarded(jobs.settings), resolver=rebound)

    plain = await send_test(client, tenant, local["id"])
    assert await run_jobs(database, strict, {plain}) == ["retrying"]
    logged = await delivery(client, tenant, local["id"], plain)
    assert logged["attempts"][0]["error"] == "refused: the URL must use https"

    https_local = await client.patch(
        f"/api/v1/webhook-endpoints/{local['id']}",
        json={"url": receiver.url().replace("http://", "https://")},
        headers=tenant.headers,
    )
    assert https_local.status_code == 200
    again = await send_test(client, tenant, local["id"])
    rebound_one = await send_test(client, tenant, rebinding["id"])
    assert await run_jobs(database, strict, {again, rebound_one}) == ["retrying", "retrying"]
    for endpoint_id, delivery_id in ((local["id"], again), (rebinding["id"], rebound_one)):
        logged = await delivery(client, tenant, endpoint_id, delivery_id)
        assert PRIVATE_ADDRESS in logged["attempts"][0]["error"]
        assert logged["attempts"][0]["status_code"] is None
    assert receiver.received == []
