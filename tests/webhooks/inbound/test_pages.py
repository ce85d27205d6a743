"""The pages: a gateway's webhook URL and setup on its card and edit page, "Register with
the provider", the event log with filters, one event with a replay, and a bulk replay."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.stripe_checkout import StripeCheckoutEmulator
from tests.web.helpers import WebUser, new_client, sign_up
from tests.webhooks.inbound.helpers import (
    deliver,
    new_secret,
    processing_payment,
    run_webhook_jobs,
)


@pytest.fixture
async def owner(app: Any) -> AsyncIterator[WebUser]:
    async with new_client(app) as client:
        yield await sign_up(client, "Acme Hooks")


@pytest.fixture
async def rival(app: Any) -> AsyncIterator[WebUser]:
    async with new_client(app) as client:
        yield await sign_up(client, "Globex Hooks")


async def _gateway(user: WebUser, payload: dict[str, Any]) -> dict[str, Any]:
    response = await user.client.post("/api/v1/gateways", json=payload, headers=user.bearer)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_the_card_and_edit_page_show_the_url_steps_and_register(
    owner: WebUser, stripe_api: StripeCheckoutEmulator, settings: Settings
) -> None:
    gateway = await _gateway(
        owner,
        {
            "gateway_type": "stripe",
            "name": "Stripe hooks",
            "configuration": {
                "secret_key": "sk_test_" + "k" * 24,
                "publishable_key": "pk_test_" + "p" * 24,
                "api_base_url": stripe_api.base_url,
            },
        },
    )
    url = f"{settings.base_url}/webhooks/{gateway['id']}"
    page = (await owner.client.get("/gateways")).text
    card = page[page.index(f'id="gw-{gateway["id"]}"') :]
    assert f'value="{url}"' in card
    assert f'data-copy="#wh-{gateway["id"]}-url"' in card
    assert "Not verified yet" in card
    assert "payment_intent.succeeded" in card
    assert f'href="/webhook-events?gateway={gateway["id"]}"' in card
    edit = (await owner.client.get(f"/gateways/{gateway['id']}/edit")).text
    assert f'value="{url}"' in edit
    assert "Register with the provider" in edit

    registered = await owner.post(f"/gateways/{gateway['id']}/webhook/register", htmx=True)
    assert registered.status_code == 200, registered.text
    assert "Registered with the provider" in registered.text
    assert "Verification set" in registered.text
    (endpoint_id,) = stripe_api.webhook_endpoints.endpoints
    assert stripe_api.webhook_endpoints.secret_of(endpoint_id) not in registered.text
    # Without htmx: back to the gateways page with a notice.
    again = await owner.post(f"/gateways/{gateway['id']}/webhook/register")
    assert again.status_code == 303


async def test_the_sandbox_card_has_no_webhook_section(owner: WebUser) -> None:
    await _gateway(owner, {"gateway_type": "sandbox", "name": "Sand"})
    assert "gw-webhook" not in (await owner.client.get("/gateways")).text


async def test_the_event_log_page_filters_shows_one_event_and_replays(
    owner: WebUser,
    rival: WebUser,
    app: Any,
    custom_gateway_emulator: CustomGatewayEmulator,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = await _gateway(
        owner,
        {
            "gateway_type": "custom",
            "name": "Hooked <b>custom</b>",
            "configuration": {
                "base_url": emulator.base_url,
                "api_key": emulator.api_key,
                "webhook_secret": emulator.webhook_secret,
            },
        },
    )
    async with new_client(app) as sender:
        for n in range(3):
            event = {"id": f"evt_page_{n}", "type": f"ping.<i>{n}</i>", "data": {}}
            assert (await deliver(sender, gateway["id"], emulator.sign_event(event))).is_success
        await deliver(sender, gateway["id"], b"{}", {"webhook-signature": "v1,AAAA"})
    await run_webhook_jobs(database, jobs)

    page = await owner.client.get("/webhook-events")
    assert page.status_code == 200
    assert page.text.count('class="badge badge-wh-ignored"') == 3
    assert page.text.count('class="badge badge-wh-rejected"') == 1
    assert "ping.<i>" not in page.text
    assert "ping.&lt;i&gt;" in page.text
    assert "Hooked &lt;b&gt;custom&lt;/b&gt;" in page.text
    assert 'aria-current="page"' in page.text
    rejected = await owner.client.get("/webhook-events", params={"status": "rejected"})
    assert rejected.text.count("badge-wh-rejected") == 1
    by_gateway = await owner.client.get("/webhook-events", params={"gateway": gateway["id"]})
    assert by_gateway.text.count('href="/webhook-events/evt_') == 4
    bad_day = await owner.client.get("/webhook-events", params={"since": "yesterday"})
    assert bad_day.status_code == 200
    assert "Enter a date as YYYY-MM-DD." in bad_day.text
    assert "No webhook events yet" in (await rival.client.get("/webhook-events")).text

    ignored = await owner.client.get(
        "/api/v1/webhook-events", params={"status": "ignored"}, headers=owner.bearer
    )
    event_id = ignored.json()["data"][0]["id"]
    assert f'href="/webhook-events/{event_id}"' in page.text
    detail = await owner.client.get(f"/webhook-events/{event_id}")
    assert detail.status_code == 200
    assert "Processing history" in detail.text
    assert "webhook-signature" in detail.text
    assert (await rival.client.get(f"/webhook-events/{event_id}")).status_code == 404
    replayed = await owner.post(
        f"/webhook-events/{event_id}/replay", htmx=True, page=f"/webhook-events/{event_id}"
    )
    assert replayed.status_code == 200, replayed.text
    assert "Replay queued" in replayed.text
    assert 'id="event-status"' in replayed.text
    refused = await rival.post(
        f"/webhook-events/{event_id}/replay", htmx=True, page="/webhook-events"
    )
    assert refused.status_code == 404


async def test_bulk_replay_from_the_page_shows_its_progress(
    owner: WebUser,
    app: Any,
    custom_gateway_emulator: CustomGatewayEmulator,
    database: Database,
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = await _gateway(
        owner,
        {
            "gateway_type": "custom",
            "name": "Bulk",
            "configuration": {
                "base_url": emulator.base_url,
                "api_key": emulator.api_key,
                "webhook_secret": emulator.webhook_secret,
            },
        },
    )
    async with new_client(app) as sender:
        for n in range(2):
            ping = {"id": f"evt_bulk_page_{n}", "type": "ping", "data": {}}
            await deliver(sender, gateway["id"], emulator.sign_event(ping))
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE webhook_events SET status = 'failed' WHERE gateway_id = :g"),
            {"g": gateway["id"]},
        )
    today = datetime.now(UTC).date().isoformat()
    started = await owner.post(
        "/webhook-events/bulk-replays",
        {"from_day": today, "to_day": today, "gateway": gateway["id"]},
        htmx=True,
        page="/webhook-events",
    )
    assert started.status_code == 200, started.text
    assert "Replaying 2 failed events" in started.text
    assert '<progress id="bulk-progress"' in started.text
    assert 'hx-trigger="every 2s"' in started.text
    replay_id = re.search(r'data-replay-id="(whr_[A-Z0-9]+)"', started.text)
    assert replay_id is not None
    progress = await owner.client.get(
        f"/webhook-events/bulk-replays/{replay_id.group(1)}", headers={"HX-Request": "true"}
    )
    assert "0 of 2 replayed" in progress.text
    missing = await owner.post(
        "/webhook-events/bulk-replays",
        {"from_day": "", "to_day": ""},
        htmx=True,
        page="/webhook-events",
    )
    assert "Choose the first and the last day" in missing.text


async def test_pages_need_sign_in(client: httpx.AsyncClient) -> None:
    response = await client.get("/webhook-events")
    assert response.status_code in (302, 303)


async def test_the_invoice_page_shows_the_disputed_mark(
    owner: WebUser,
    app: Any,
    custom_gateway_emulator: CustomGatewayEmulator,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = await _gateway(
        owner,
        {
            "gateway_type": "custom",
            "name": "Disputed",
            "configuration": {
                "base_url": emulator.base_url,
                "api_key": emulator.api_key,
                "webhook_secret": emulator.webhook_secret,
            },
        },
    )
    as_api = cast(Tenant, SimpleNamespace(headers=owner.bearer))
    payment = await processing_payment(owner.client, as_api, gateway["id"])
    reference = next(
        p["id"] for p in emulator.state.payments.values() if p["reference"] == payment["id"]
    )
    emulator.settle(reference, "succeeded")
    async with new_client(app) as sender:
        await deliver(sender, gateway["id"], emulator.outbox[-1])
        await run_webhook_jobs(database, jobs)
        await deliver(sender, gateway["id"], emulator.dispute(reference, "open", dispute_id="dp_p"))
        await run_webhook_jobs(database, jobs)
    page = (await owner.client.get(f"/invoices/{payment['invoice_id']}")).text
    assert f'id="dispute-{payment["id"]}"' in page
    assert ">Disputed<" in page
    assert "Chargeback dp_p opened" in page
