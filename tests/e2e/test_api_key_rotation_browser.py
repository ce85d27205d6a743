"""Rotating an API key in headless chromium: the new key once, and when the old one stops."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.browser


def test_rotate_a_key_with_a_grace_period(browser: Any, live_server: str, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Hooli")
    page.get_by_label("Work email").fill(f"rotate-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))

    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Billing server")
    page.get_by_label("Expires after (days)").fill("90")
    page.get_by_role("checkbox", name=re.compile("invoices:read")).check()
    page.get_by_role("button", name="Create key").click()
    old_key = page.locator("#new-key").input_value()
    assert old_key.startswith("pgk_")

    page.get_by_label("Rotate Billing server").click()
    page.get_by_label("Old key keeps working for (hours)").fill("2")
    page.get_by_role("button", name="Rotate key").click()
    expect(page.locator("#rotation-grace")).to_contain_text(old_key[:12])
    expect(page.locator("#rotation-grace")).to_contain_text("keeps working until")
    new_key = page.locator("#new-key").input_value()
    assert new_key.startswith("pgk_")
    assert new_key != old_key
    expect(page.get_by_text("Rotated", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts / "api-key-rotated.png"), full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280, "the page must not scroll sideways"
    context.close()
