"""Active sessions in headless chromium: end another browser's session, then your own."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.conftest import STRONG_PASSWORD
from tests.e2e.conftest import open_account_menu

pytestmark = pytest.mark.browser


def test_end_another_browser_then_sign_out_from_the_sessions_page(
    browser: Any, live_server: str, artifacts: Path
) -> None:
    email = f"sessions-{secrets.token_hex(4)}@example.com"
    desk = browser.new_context(viewport={"width": 1280, "height": 860})
    page = desk.new_page()
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Hooli Sessions")
    page.get_by_label("Work email").fill(email)
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))

    # The same person signs in from a second browser.
    laptop = browser.new_context(user_agent="LaptopBrowser/9.0")
    other = laptop.new_page()
    other.goto(f"{live_server}/login")
    other.get_by_label("Email").fill(email)
    other.get_by_label("Password").fill(STRONG_PASSWORD)
    other.get_by_role("button", name="Sign in").click()
    expect(other).to_have_url(re.compile(r"/overview$"))

    open_account_menu(page)
    page.get_by_role("link", name="Active sessions").click()
    expect(page).to_have_url(re.compile(r"/account/sessions$"))
    expect(page.get_by_text("LaptopBrowser/9.0")).to_be_visible()
    expect(page.get_by_text("this session")).to_be_visible()
    page.screenshot(path=str(artifacts / "sessions.png"), full_page=True)

    page.get_by_role("button", name=re.compile(r"^End the session signed in")).click()
    page.locator("#confirm-dialog").get_by_role("button", name="End session").click()
    expect(page.get_by_text("LaptopBrowser/9.0")).to_have_count(0)
    other.reload()
    expect(other).to_have_url(re.compile(r"/login"))

    page.get_by_role("button", name="End this session and sign out").click()
    page.locator("#confirm-dialog").get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(re.compile(r"/login$"))
    page.goto(f"{live_server}/account/sessions")
    expect(page).to_have_url(re.compile(r"/login"))
    laptop.close()
    desk.close()
