"""API keys, members and the audit log in headless chromium (and screenshots of each)."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.browser


def test_keys_members_and_audit(browser: Any, live_server: str, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Pied Piper")
    page.get_by_label("Work email").fill(f"keys-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))

    # An API key, shown once in a copyable box.
    page.get_by_role("link", name="API keys").click()
    page.get_by_label("Name").fill("Billing server")
    page.get_by_role("checkbox", name=re.compile("gateways:read")).check()
    page.get_by_role("button", name="Create key").click()
    box = page.locator("#new-key")
    expect(box).to_have_value(re.compile(r"^pgk_"))
    expect(page.get_by_role("cell", name="Billing server", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts / "api-keys.png"), full_page=True)
    page.get_by_role("button", name="Revoke Billing server").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("No API keys yet.")).to_be_visible()

    # An invitation link, shown once.
    page.get_by_role("link", name="Members").click()
    page.locator("#f-email").fill("new.teammate@example.com")
    page.get_by_label("Role", exact=True).select_option("viewer")
    page.get_by_role("button", name="Create invitation").click()
    expect(page.locator("#invite-link")).to_have_value(re.compile(r"/invite/pgi_"))
    expect(page.get_by_role("cell", name="new.teammate@example.com", exact=True)).to_be_visible()
    page.screenshot(path=str(artifacts / "members.png"), full_page=True)

    # The audit log lists all of it.
    page.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("cell", name="api_key.revoked").first).to_be_visible()
    expect(page.get_by_role("cell", name="member.invited").first).to_be_visible()
    page.locator("details.diff").first.locator("summary").click()
    page.screenshot(path=str(artifacts / "audit.png"), full_page=True)
    width = page.evaluate("() => document.documentElement.scrollWidth")
    assert width <= 1280, "the page must not scroll sideways"

    # Keyboard: the first Tab on a fresh page lands on the skip link.
    page.reload()
    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    context.close()
