"""The webhooks pages in headless chromium: an endpoint added with its secret shown once,
a test event delivered to a real receiver and shown in the delivery log, a secret rotation;
no sideways scroll at 1280 and 390 px, no console or CSP error, no axe violation."""

from __future__ import annotations

import asyncio
import re
import secrets
import threading
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import ConsoleMessage, Page, expect

from paygate.db import Database
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from paygate.webhooks.outbound.dispatch import Dispatcher
from tests.conftest import STRONG_PASSWORD
from tests.e2e.axe import axe_violations, with_axe
from tests.fakes.servers import serve_asgi
from tests.webhooks.outbound.receiver import Receiver

pytestmark = pytest.mark.browser


def deliver_pending(settings: Settings, delivery_ids: list[str]) -> list[str]:
    """What a worker would do (the test server runs none), on a loop of its own: sync
    Playwright keeps this thread's loop marked running."""
    results: list[str] = []

    async def run() -> None:
        assert settings.database_url is not None
        database = Database(settings.database_url)
        try:
            keyring = Keyring.parse(settings.master_keys_text())
            dispatcher = Dispatcher(database, keyring, settings)
            for delivery_id in delivery_ids:
                results.append(await dispatcher.deliver(delivery_id))
        finally:
            await database.dispose()

    thread = threading.Thread(target=lambda: asyncio.run(run()))
    thread.start()
    thread.join(timeout=30)
    return results


def check_page(page: Page, artifacts: Path, name: str, errors: list[str]) -> None:
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.screenshot(path=str(artifacts / f"{name}-{width}.png"), full_page=True)
        scroll = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} scrolls sideways at {width} px ({scroll})"
        assert axe_violations(page) == [], name
    page.set_viewport_size({"width": 1280, "height": 900})
    assert errors == [], errors


def test_webhook_endpoint_story(
    browser: Any, live_server: str, artifacts: Path, settings: Settings
) -> None:
    receiver = Receiver()
    with serve_asgi(receiver.app) as receiver_url:
        receiver.base_url = receiver_url
        context = with_axe(browser.new_context(viewport={"width": 1280, "height": 900}))
        page = context.new_page()
        errors: list[str] = []

        def console(message: ConsoleMessage) -> None:
            if message.type == "error":
                errors.append(message.text)

        page.on("console", console)
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(f"{live_server}/signup")
        page.get_by_label("Company name").fill("Initech")
        page.get_by_label("Work email").fill(f"hooks-{secrets.token_hex(4)}@example.com")
        page.get_by_label("Password").fill(STRONG_PASSWORD)
        page.get_by_role("button", name="Create account").click()
        expect(page).to_have_url(re.compile(r"/gateways$"))

        page.get_by_role("link", name="Webhooks").click()
        expect(page.get_by_role("heading", name="Webhooks", level=1)).to_be_visible()
        check_page(page, artifacts, "webhooks-empty", errors)

        # A refused form keeps what was typed and says why.
        page.get_by_label("URL").fill("ftp://example.com/hooks")
        page.get_by_role("button", name="Add endpoint").click()
        expect(page.locator(".field-error").first).to_be_visible()
        # The refused form is a 422 the browser logs; nothing else may be.
        assert all("422" in e for e in errors), errors
        errors.clear()

        page.get_by_label("URL").fill(receiver.url("orders"))
        page.get_by_label("Description").fill("Order system")
        page.get_by_role("checkbox", name=re.compile("payment.succeeded")).check()
        page.get_by_role("checkbox", name=re.compile("invoice.paid")).check()
        page.get_by_role("button", name="Add endpoint").click()
        secret = page.locator("#new-secret").input_value()
        assert secret.startswith("whsec_")
        expect(page.get_by_text("shown only this once")).to_be_visible()
        check_page(page, artifacts, "webhooks-created", errors)

        page.reload()
        assert secret not in page.content()
        receiver.secrets.append(secret)

        page.get_by_role("link", name=receiver.url("orders")).click()
        expect(page.get_by_role("heading", name="Webhook endpoint")).to_be_visible()
        page.get_by_role("button", name="Send test event").click()
        expect(page.locator("#deliveries")).to_contain_text("webhook.test")
        delivery_id = page.locator("[id^=delivery-dlv_]").first.get_attribute("id")
        assert delivery_id is not None
        assert deliver_pending(settings, [delivery_id.removeprefix("delivery-")]) == ["succeeded"]
        assert len(receiver.verified()) == 1

        page.get_by_role("link", name="Refresh").click()
        expect(page.locator("#deliveries")).to_contain_text("Delivered")
        page.get_by_text("Attempts and payload").first.click()
        expect(page.locator(".wh-attempts")).to_contain_text("HTTP 200")
        check_page(page, artifacts, "webhooks-endpoint", errors)

        page.get_by_role("button", name="Rotate secret").click()
        page.locator("#confirm-ok").click()
        expect(page.locator("#new-secret")).to_be_visible()
        rotated = page.locator("#new-secret").input_value()
        assert rotated.startswith("whsec_")
        assert rotated != secret
        expect(page.get_by_text("The previous secret also signs until")).to_be_visible()
        check_page(page, artifacts, "webhooks-rotated", errors)
        context.close()
