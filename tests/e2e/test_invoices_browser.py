"""The invoices story in headless chromium: create with two lines, list, open, copy the
link, get paid through the API (sandbox), see the payment and timeline, refund part of it."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import STRONG_PASSWORD

pytestmark = pytest.mark.browser


def sign_up(page: Page, live_server: str) -> None:
    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Initech Billing")
    page.get_by_label("Work email").fill(f"inv-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))


def test_invoice_story(browser: Any, live_server: str, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
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
    sign_up(page, live_server)
    access = next(c["value"] for c in context.cookies() if c["name"] == "pg_access")
    bearer = {"Authorization": f"Bearer {access}"}
    api = httpx.Client(base_url=live_server, headers=bearer, timeout=30)
    created = api.post(
        "/api/v1/gateways",
        json={"gateway_type": "sandbox", "name": "Sandbox", "supported_currencies": ["USD"]},
    )
    assert created.status_code == 201, created.text

    # The empty list, from the sidebar.
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Invoices").click()
    expect(page).to_have_url(re.compile(r"/invoices$"))
    expect(page.get_by_role("heading", name="No invoices yet")).to_be_visible()
    page.screenshot(path=str(artifacts / "invoices-empty.png"), full_page=True)

    # A new invoice with two lines: the second added with the "Add line" button (JS).
    page.get_by_role("link", name="New invoice").click()
    page.get_by_label("Name").fill("Jane Buyer")
    page.get_by_label("Email").fill("jane@buyer.example.com")
    page.get_by_label("Description of line 1").fill("Website redesign")
    page.get_by_label("Quantity of line 1").fill("2")
    page.get_by_label("Unit price of line 1").fill("1,250.00")
    page.get_by_role("button", name="Add line").click()
    expect(page.get_by_label("Description of line 2")).to_be_focused()
    page.get_by_label("Description of line 2").fill("Hosting (12 months)")
    page.get_by_label("Unit price of line 2").fill("240")
    expect(page.locator("[data-invoice-total]")).to_have_text("$2,740.00 USD")
    page.get_by_label("Memo").fill("Thank you for your business.")
    # One bad price first: the error is inline, what was typed stays.
    page.get_by_label("Unit price of line 2").fill("24.999")
    page.screenshot(path=str(artifacts / "invoice-new.png"), full_page=True)
    page.get_by_role("button", name="Create invoice").click()
    error = page.locator("#f-line_items-1-unit_amount-error")
    expect(error).to_contain_text("at most 2 decimals")
    expect(page.get_by_label("Unit price of line 2")).to_be_focused()
    page.screenshot(path=str(artifacts / "invoice-new-errors.png"), full_page=True)
    page.get_by_label("Unit price of line 2").fill("240")
    page.get_by_role("button", name="Create invoice").click()

    expect(page).to_have_url(re.compile(r"/invoices/inv_[A-Za-z0-9]+\?notice=created$"))
    invoice_id = re.search(r"/invoices/(inv_[A-Za-z0-9]+)", page.url).group(1)  # type: ignore[union-attr]
    expect(page.locator("#invoice-status")).to_have_text("Open")
    expect(page.locator("[data-total]")).to_have_text("$2,740.00")
    expect(page.locator("#pay-link")).to_be_visible()
    expect(page.locator("#pay-link")).to_have_value(re.compile(r"/pay/"))
    expect(page.get_by_role("button", name="Copy")).to_be_visible()
    page.screenshot(path=str(artifacts / "invoice-detail-open.png"), full_page=True)

    # In the list.
    page.get_by_role("link", name="Invoices").first.click()
    row = page.locator("tr.inv-row", has_text="Jane Buyer")
    expect(row).to_contain_text("$2,740.00")
    expect(row).to_contain_text("Open")
    page.screenshot(path=str(artifacts / "invoices-list.png"), full_page=True)
    row.get_by_role("link").first.click()
    expect(page).to_have_url(re.compile(rf"/invoices/{invoice_id}$"))

    # Paid through the JSON API with the sandbox; a reload shows it.
    paid = api.post(
        f"/api/v1/invoices/{invoice_id}/payments",
        json={"payment_method": "4242424242424242"},
        headers={"Idempotency-Key": secrets.token_hex(8)},
    )
    assert paid.status_code == 201, paid.text
    payment_id = paid.json()["id"]
    page.reload()
    expect(page.locator("#invoice-status")).to_have_text("Paid")
    item = page.locator(f"#payment-{payment_id}")
    expect(item).to_contain_text("Succeeded")
    expect(item).to_contain_text("Sandbox")
    expect(page.locator("#timeline")).to_contain_text("Payment of $2,740.00")
    expect(page.locator("#timeline")).to_contain_text("Invoice created")

    # Refund part of it.
    item.locator("summary", has_text="Refund").click()
    item.get_by_label("Amount (USD)").fill("240")
    item.get_by_label("Reason").fill("Hosting cancelled")
    page.screenshot(path=str(artifacts / "invoice-refund-form.png"), full_page=True)
    item.get_by_role("button", name="Refund payment").click()
    expect(page.locator("[data-refunded]")).to_have_text("$240.00")
    item = page.locator(f"#payment-{payment_id}")
    expect(item.locator(".refund-item")).to_contain_text("Hosting cancelled")
    expect(page.locator("#timeline")).to_contain_text("Refund of $240.00: succeeded")
    expect(page.locator("#notices")).to_contain_text("Refund submitted")
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "invoice-detail-refunded.png"), full_page=True)

    # A small screen still reads.
    page.set_viewport_size({"width": 390, "height": 844})
    page.evaluate("window.scrollTo(0, 0)")
    page.screenshot(path=str(artifacts / "invoice-detail-mobile.png"), full_page=True)

    api.close()
    context.close()
    assert not problems, problems
