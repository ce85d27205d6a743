"""The inbound webhook pages in headless chromium: a gateway's webhook URL on its card, the
event log reached from it, filters, one event and its replay, a bulk replay's progress bar;
at 1280 and 390 px without sideways scroll, console or CSP errors, or axe findings."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text

from paygate.db import Database
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from paygate.webhooks.inbound.processing import ProcessingContext, process_event
from tests.conftest import STRONG_PASSWORD
from tests.e2e.axe import axe_violations, with_axe
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.webhooks.inbound.helpers import new_secret

pytestmark = pytest.mark.browser


def _process_and_fail(settings: Settings, gateway_id: str, *, fail: bool) -> None:
    """What the worker does (the test server runs none), in a loop of this test's own."""

    async def run() -> None:
        database = Database(settings.database_url or "")
        context = ProcessingContext(database, Keyring.parse(settings.master_keys_text()), settings)
        try:
            async with database.transaction() as session:
                ids = (
                    (
                        await session.execute(
                            text(
                                "SELECT id FROM webhook_events WHERE gateway_id = :g AND verified"
                            ),
                            {"g": gateway_id},
                        )
                    )
                    .scalars()
                    .all()
                )
            for event_id in ids:
                await process_event(context, event_id, trigger="received")
            if fail:
                async with database.transaction() as session:
                    await session.execute(
                        text(
                            "UPDATE webhook_events SET status = 'failed' "
                            "WHERE gateway_id = :g AND verified"
                        ),
                        {"g": gateway_id},
                    )
        finally:
            await database.dispose()

    # Sync Playwright keeps an event loop running in this thread: run ours in another.
    worker = threading.Thread(target=asyncio.run, args=(run(),))
    worker.start()
    worker.join(timeout=60)


def _check_page(page: Page, artifacts: Path, name: str) -> None:
    for width, height in ((1280, 900), (390, 844)):
        page.set_viewport_size({"width": width, "height": height})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
        scroll = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} scrolls sideways at {width} px ({scroll})"
        assert axe_violations(page) == [], (name, width)
    page.set_viewport_size({"width": 1280, "height": 900})


def test_webhook_event_log_story(
    browser: Any,
    live_server: str,
    settings: Settings,
    custom_gateway_emulator: CustomGatewayEmulator,
    artifacts: Path,
) -> None:
    context = with_axe(browser.new_context(viewport={"width": 1280, "height": 900}))
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: problems.append(f"console: {msg.text}") if msg.type == "error" else None,
    )
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Hooli Webhooks")
    page.get_by_label("Work email").fill(f"hooks-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))
    access = next(c["value"] for c in context.cookies() if c["name"] == "pg_access")
    api = httpx.Client(
        base_url=live_server, headers={"Authorization": f"Bearer {access}"}, timeout=30
    )

    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = api.post(
        "/api/v1/gateways",
        json={
            "gateway_type": "custom",
            "name": "Acquirer One",
            "configuration": {
                "base_url": emulator.base_url,
                "api_key": emulator.api_key,
                "webhook_secret": emulator.webhook_secret,
            },
        },
    ).json()
    sender = httpx.Client(base_url=live_server, timeout=30)
    samples = [
        {
            "id": "evt_story_1",
            "type": "payment.succeeded",
            "data": {
                "id": "pay_gw_unknown",
                "status": "succeeded",
                "amount": 1200,
                "currency": "USD",
            },
        },
        {"id": "evt_story_2", "type": "account.updated", "data": {}},
    ]
    for sample in samples:
        delivery = emulator.sign_event(sample)
        sent = sender.post(
            f"/webhooks/{gateway['id']}", content=delivery.body, headers=delivery.headers
        )
        assert sent.status_code == 200, sent.text
    forged = sender.post(
        f"/webhooks/{gateway['id']}", content=b"{}", headers={"webhook-signature": "v1,AAAA"}
    )
    assert forged.status_code == 400
    _process_and_fail(settings, gateway["id"], fail=False)

    # The card shows the URL to give the gateway, with a copy button and the steps.
    page.reload()
    card = page.locator(f"#gw-{gateway['id']}")
    expect(card.locator(f"#wh-{gateway['id']}-url")).to_have_value(
        f"{live_server}/webhooks/{gateway['id']}"
    )
    card.get_by_text("Setup steps").click()
    expect(card.locator(".wh-steps ol li").first).to_be_visible()
    _check_page(page, artifacts, "webhooks-gateway-card")
    card.get_by_role("link", name="Event log").click()
    expect(page).to_have_url(re.compile(rf"/webhook-events\?gateway={gateway['id']}$"))
    expect(page.locator("table.wh-table tbody tr")).to_have_count(3)
    expect(page.locator(".badge-wh-unmatched")).to_have_count(1)
    _check_page(page, artifacts, "webhook-events")

    # Filter: the refused request, with its reason.
    page.get_by_label("Status").select_option("rejected")
    page.get_by_role("button", name="Apply filters").click()
    expect(page.locator("table.wh-table tbody tr")).to_have_count(1)
    expect(page.locator(".wh-outcome")).to_contain_text("header is missing")

    # One event, its history, a replay.
    page.get_by_label("Status").select_option("unmatched")
    page.get_by_role("button", name="Apply filters").click()
    page.locator("a.wh-type").first.click()
    expect(page).to_have_url(re.compile(r"/webhook-events/evt_[A-Z0-9]+$"))
    expect(page.get_by_role("heading", name="Processing history")).to_be_visible()
    expect(page.locator(".wh-history li")).to_have_count(1)
    _check_page(page, artifacts, "webhook-event")
    page.get_by_role("button", name="Replay").click()
    expect(page.locator("#notices")).to_contain_text("Replay queued")
    expect(page.locator("#event-status .badge-wh-pending")).to_be_visible()

    # A bulk replay of failed events, with its progress bar.
    _process_and_fail(settings, gateway["id"], fail=True)
    page.goto(f"{live_server}/webhook-events")
    today = datetime.now(UTC).date().isoformat()
    page.get_by_label("Received from (UTC)").fill(today)
    page.get_by_label("Received until (UTC, inclusive)").fill(today)
    page.get_by_role("button", name="Replay failed events").click()
    expect(page.locator("#notices")).to_contain_text("Replaying 2 failed events")
    expect(page.locator("#bulk-progress")).to_be_visible()
    expect(page.locator("#bulk-replay")).to_contain_text("0 of 2 replayed")
    _check_page(page, artifacts, "webhook-bulk-replay")

    api.close()
    sender.close()
    context.close()
    assert not problems, problems
