"""The routing page in headless chromium: add rules, move one up, preview, simulate,
restore a version, the retry policy; at 1280 and 390 px wide, no sideways scroll, no
console or CSP error, no axe (WCAG A/AA) violation."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import STRONG_PASSWORD
from tests.e2e.axe import axe_violations, with_axe

pytestmark = pytest.mark.browser


def check_page(page: Page, name: str, artifacts: Path, errors: list[str]) -> None:
    for width in (1280, 390):
        page.set_viewport_size({"width": width, "height": 900})
        page.wait_for_timeout(100)
        scroll = page.evaluate("() => document.documentElement.scrollWidth")
        assert scroll <= width, f"{name} scrolls sideways at {width}px ({scroll})"
        page.screenshot(path=str(artifacts / f"routing-{name}-{width}.png"), full_page=True)
        assert axe_violations(page) == [], f"{name} at {width}px"
    page.set_viewport_size({"width": 1280, "height": 900})
    assert errors == [], errors


def add_sandbox(page: Page, name: str) -> None:
    page.goto(page.url.split("/routing")[0].split("/gateways")[0] + "/gateways")
    page.get_by_role("link", name="Add gateway").first.click()
    dialog = page.locator("dialog#modal")
    dialog.locator(".type-card", has_text="Sandbox").click()
    dialog.get_by_label("Name").fill(name)
    dialog.get_by_label("Currencies").fill("USD, EUR")
    dialog.get_by_role("button", name="Add gateway").click()
    expect(dialog).to_be_hidden()


def add_rule(page: Page, base: str, name: str, currencies: str, gateways: list[str]) -> None:
    page.goto(f"{base}/routing/rules/new")
    page.locator("#f-name").fill(name)
    page.get_by_label("Currencies").fill(currencies)
    for index, gateway in enumerate(gateways):
        page.get_by_label(f"Gateway {index + 1}", exact=True).select_option(label=gateway)
    page.get_by_role("button", name="Add rule").click()
    expect(page).to_have_url(re.compile(r"/routing$"))


def test_routing_story(browser: Any, live_server: str, artifacts: Path) -> None:
    context = with_axe(browser.new_context(viewport={"width": 1280, "height": 900}))
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: (
            errors.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "status of 422" not in msg.text
            else None
        ),
    )
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Routing Co")
    page.get_by_label("Work email").fill(f"e2e-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))
    add_sandbox(page, "Alpha")
    add_sandbox(page, "Beta")

    page.get_by_role("link", name="Routing").first.click()
    expect(page.get_by_role("heading", name="Routing", exact=True)).to_be_visible()
    expect(page.get_by_text("No rules yet")).to_be_visible()
    check_page(page, "empty", artifacts, errors)

    add_rule(page, live_server, "Euro to Beta", "EUR", ["Beta", "Alpha"])
    add_rule(page, live_server, "Dollars to Alpha", "USD", ["Alpha"])
    names = page.locator(".rt-name")
    expect(names).to_have_text(["Euro to Beta", "Dollars to Alpha"])
    page.get_by_role("button", name="Move Dollars to Alpha up").click()
    expect(page.locator(".rt-name")).to_have_text(["Dollars to Alpha", "Euro to Beta"])

    # Preview: where would 12.50 EUR from Germany go?
    page.get_by_label("Amount", exact=True).fill("12.50")
    page.get_by_label("Currency", exact=True).fill("EUR")
    page.get_by_label("Country").fill("DE")
    page.get_by_role("button", name="Preview").click()
    result = page.locator("[data-preview-result]")
    expect(result).to_contain_text("Goes to Beta, then Alpha")
    expect(result).to_contain_text('rule 2 ("Euro to Beta") matched')

    page.get_by_role("button", name="Simulate the current rules").click()
    expect(page.locator("[data-simulation-result]")).to_contain_text("over 0 payments")
    check_page(page, "rules", artifacts, errors)

    # Restore version 1 (only the euro rule), through the confirmation dialog.
    page.get_by_role("button", name="Restore version 1").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Restore").click()
    expect(page.locator(".rt-name")).to_have_text(["Euro to Beta"])
    expect(page.get_by_text("restored version 1")).to_be_visible()

    # The rule form, with an error inline.
    page.goto(f"{live_server}/routing/rules/new")
    page.locator("#f-name").fill("Broken split")
    page.get_by_label("Split", exact=False).first.check()
    page.get_by_label("Gateway 1", exact=True).select_option(label="Alpha")
    page.get_by_label("Share of gateway 1 in percent (split only)").fill("60")
    page.get_by_label("Gateway 2", exact=True).select_option(label="Beta")
    page.get_by_label("Share of gateway 2 in percent (split only)").fill("30")
    page.get_by_role("button", name="Add rule").click()
    expect(page.locator(".field-error", has_text="add up to 100")).to_be_visible()
    check_page(page, "rule-form", artifacts, errors)

    page.goto(f"{live_server}/routing/retries")
    expect(page.get_by_role("heading", name="Retries and failover")).to_be_visible()
    page.get_by_label("Attempts per payment").fill("2")
    page.get_by_label("For API payments").uncheck()
    page.get_by_role("button", name="Save policy").click()
    expect(page.get_by_text("Retry policy saved.")).to_be_visible()
    check_page(page, "retries", artifacts, errors)
    context.close()
