"""The gateways story in headless chromium: sign up, add, test, toggle, edit, delete, restore
a version from the history, sign out."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import STRONG_PASSWORD
from tests.e2e.conftest import open_account_menu

pytestmark = pytest.mark.browser

STRIPE_SECRET = "sk_test_" + secrets.token_hex(12) + "4242"
STRIPE_PUBLISHABLE = "pk_test_" + secrets.token_hex(12)
STRIPE_WEBHOOK = "whsec_" + secrets.token_hex(16)


def card(page: Page, name: str) -> Any:
    return page.locator("article.gw-card", has=page.get_by_role("heading", name=name, exact=True))


def add_gateway(page: Page, type_name: str) -> None:
    page.get_by_role("link", name="Add gateway").first.click()
    dialog = page.locator("dialog#modal")
    expect(dialog).to_be_visible()
    dialog.locator(".type-card", has_text=type_name).click()
    expect(dialog.get_by_role("heading", name=f"Add a {type_name} gateway")).to_be_visible()


def test_gateway_story(
    browser: Any, live_server: str, localstripe_url: str, artifacts: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}")
            if msg.type == "error" and "status of 422" not in msg.text
            else None
        ),
    )

    # Sign up.
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Hooli Payments")
    page.get_by_label("Work email").fill(f"e2e-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))
    expect(page.get_by_role("heading", name="No gateways yet")).to_be_visible()
    page.screenshot(path=str(artifacts / "gateways-empty.png"), full_page=True)

    # Add a sandbox gateway: it needs no credentials.
    add_gateway(page, "Sandbox")
    page.screenshot(path=str(artifacts / "add-gateway-sandbox.png"))
    page.locator("dialog#modal").get_by_role("button", name="Add gateway").click()
    expect(page.locator("dialog#modal")).to_be_hidden()
    expect(card(page, "Sandbox")).to_be_visible()

    # Add Stripe aimed at localstripe; first show an inline error, then fix it.
    add_gateway(page, "Stripe")
    dialog = page.locator("dialog#modal")
    expect(dialog.get_by_label("Secret key")).to_have_attribute("type", "password")
    dialog.get_by_label("Name").fill("Stripe US")
    dialog.get_by_label("Secret key").fill(STRIPE_SECRET)
    dialog.get_by_label("Publishable key").fill("pk_live_wrong")
    dialog.get_by_label("Webhook signing secret").fill(STRIPE_WEBHOOK)
    dialog.get_by_label("API base URL").fill(localstripe_url)
    page.screenshot(path=str(artifacts / "add-gateway-modal.png"))
    dialog.get_by_role("button", name="Add gateway").click()
    error = dialog.locator("#f-configuration-publishable_key-error")
    expect(error).to_contain_text("other environment")
    expect(dialog.get_by_label("Publishable key")).to_be_focused()
    # The secret typed before is not sent back: it must be typed again.
    expect(dialog.get_by_label("Secret key")).to_have_value("")
    page.screenshot(path=str(artifacts / "add-gateway-errors.png"))
    dialog.get_by_label("Secret key").fill(STRIPE_SECRET)
    dialog.get_by_label("Publishable key").fill(STRIPE_PUBLISHABLE)
    dialog.get_by_label("Webhook signing secret").fill(STRIPE_WEBHOOK)
    dialog.get_by_role("button", name="Add gateway").click()
    expect(dialog).to_be_hidden()
    stripe_card = card(page, "Stripe US")
    expect(stripe_card).to_contain_text("sk_test_..." + STRIPE_SECRET[-4:])

    # Test both connections.
    for name in ("Sandbox", "Stripe US"):
        target = card(page, name)
        target.get_by_role("button", name="Test connection").click()
        expect(card(page, name).locator(".gw-test")).to_contain_text("Connected", timeout=15000)
    expect(card(page, "Stripe US")).to_contain_text("Connected to Stripe")

    # Toggle the sandbox off and on again (a real switch, kept focused for the keyboard).
    switch = card(page, "Sandbox").get_by_role("switch", name="Enabled")
    expect(switch).to_have_attribute("aria-checked", "true")
    switch.click()
    expect(card(page, "Sandbox").get_by_role("switch")).to_have_attribute("aria-checked", "false")
    expect(card(page, "Sandbox")).to_contain_text("Disabled")
    expect(card(page, "Sandbox").get_by_role("switch")).to_be_focused()
    page.keyboard.press("Space")
    expect(card(page, "Sandbox").get_by_role("switch")).to_have_attribute("aria-checked", "true")

    # Edit without retyping the secret: the mask stays the same.
    mask = "sk_test_..." + STRIPE_SECRET[-4:]
    card(page, "Stripe US").get_by_role("link", name="Edit Stripe US").click()
    dialog = page.locator("dialog#modal")
    expect(dialog.get_by_text(f"Stored: {mask} — leave empty to keep")).to_be_visible()
    expect(dialog.get_by_label("Secret key")).to_have_value("")
    dialog.get_by_label("Name").fill("Stripe Europe")
    dialog.get_by_label("Currencies").fill("EUR, USD")
    dialog.get_by_role("button", name="Save changes").click()
    expect(dialog).to_be_hidden()
    edited = card(page, "Stripe Europe")
    expect(edited).to_contain_text(mask)
    expect(edited).to_contain_text("EUR")

    # Esc closes the modal.
    page.get_by_role("link", name="Add gateway").first.click()
    expect(page.locator("dialog#modal")).to_be_visible()
    page.keyboard.press("Escape")
    expect(page.locator("dialog#modal")).to_be_hidden()

    page.screenshot(path=str(artifacts / "gateways.png"), full_page=True)

    # Delete with confirmation: cancel first, then confirm.
    card(page, "Sandbox").get_by_role("button", name="Delete Sandbox").click()
    confirm = page.locator("dialog#confirm-dialog")
    expect(confirm).to_be_visible()
    expect(confirm).to_contain_text("Delete Sandbox?")
    page.screenshot(path=str(artifacts / "delete-confirm.png"))
    confirm.get_by_role("button", name="Cancel").click()
    expect(card(page, "Sandbox")).to_be_visible()
    card(page, "Sandbox").get_by_role("button", name="Delete Sandbox").click()
    confirm.get_by_role("button", name="Delete gateway").click()
    expect(card(page, "Sandbox")).to_have_count(0)
    expect(card(page, "Stripe Europe")).to_be_visible()

    # History: the edit made a version; restoring version 1 (through the confirmation
    # dialog) puts the old name back and keeps the stored secret.
    card(page, "Stripe Europe").get_by_role("link", name="History of Stripe Europe").click()
    expect(page).to_have_url(re.compile(r"/gateways/gw_[A-Za-z0-9]+/history$"))
    history = page.locator("#gateway-history")
    expect(history).to_contain_text("name and currencies changed")
    page.get_by_role("button", name="Restore version 1").click()
    expect(confirm).to_contain_text("Restore version 1?")
    confirm.get_by_role("button", name="Restore", exact=True).click()
    expect(page.locator("#notices")).to_contain_text("Version 1 restored as version 3")
    expect(history).to_contain_text("restored version 1")
    expect(page.get_by_role("heading", name="History of Stripe US")).to_be_visible()
    expect(history.get_by_role("button", name="Restore version 2")).to_be_visible()
    page.screenshot(path=str(artifacts / "gateway-history.png"), full_page=True)
    page.goto(f"{live_server}/gateways")
    expect(card(page, "Stripe US")).to_contain_text(mask)

    # Nothing secret ever reached the browser.
    html = page.content()
    assert STRIPE_SECRET not in html
    assert STRIPE_WEBHOOK not in html

    # A phone-sized look at the page.
    phone = browser.new_context(
        viewport={"width": 390, "height": 844}, storage_state=context.storage_state()
    )
    phone_page = phone.new_page()
    phone_page.goto(f"{live_server}/gateways")
    phone_page.screenshot(path=str(artifacts / "gateways-phone.png"), full_page=True)
    phone.close()

    # Sign out, from the account menu.
    open_account_menu(page)
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    expect(page.get_by_text("You are signed out.")).to_be_visible()
    page.goto(f"{live_server}/gateways")
    expect(page).to_have_url(re.compile(r"/login\?next=/gateways$"))

    context.close()
    assert problems == []
