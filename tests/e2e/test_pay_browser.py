"""The invoice payment page in headless chromium: the sandbox card form, the sandbox's
3-D Secure page, Stripe through localstripe's fake Stripe.js, and a PayPal redirect.

Companies, gateways and invoices are set up through the live server's JSON API; the
customer only ever uses the public page."""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect

from tests.conftest import STRONG_PASSWORD
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.stripe_checkout import StripeCheckoutEmulator

pytestmark = pytest.mark.browser

PUBLISHABLE_KEY = "pk_test_TYooMQauvdEDq54NiTphI7jx"


class Merchant:
    """A company set up through the JSON API of the live server."""

    def __init__(self, base_url: str, name: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)
        email = f"pay-{secrets.token_hex(4)}@example.com"
        response = self.http.post(
            "/api/v1/auth/register",
            json={"email": email, "password": STRONG_PASSWORD, "company_name": name},
        )
        assert response.status_code == 201, response.text
        self.http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"

    def gateway(self, payload: dict[str, Any]) -> dict[str, Any]:
        response = self.http.post("/api/v1/gateways", json=payload)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def invoice(self, amount: int = 12_500, **fields: Any) -> dict[str, Any]:
        payload = {
            "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
            "currency": "USD",
            "line_items": [
                {"description": "Website redesign", "quantity": 1, "unit_amount": amount - 2_500},
                {"description": "Hosting (1 year)", "quantity": 1, "unit_amount": 2_500},
            ],
            "due_date": "2031-03-15",
            "memo": "Thank you for your business!",
            **fields,
        }
        response = self.http.post("/api/v1/invoices", json=payload)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def status_of(self, invoice: dict[str, Any]) -> str:
        status: str = self.http.get(f"/api/v1/invoices/{invoice['id']}").json()["status"]
        return status


@pytest.fixture(scope="module")
def merchants(live_server: str) -> Iterator[tuple[Merchant, Merchant]]:
    ours, rival = Merchant(live_server, "Northwind Studio"), Merchant(live_server, "Rival Co")
    rival.gateway({"gateway_type": "sandbox", "name": "Rival sandbox"})
    yield ours, rival
    ours.http.close()
    rival.http.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    yield context
    context.close()


def watch(page: Page) -> list[str]:
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    return problems


def fill_sandbox_card(page: Page, number: str) -> None:
    page.get_by_label("Card number").fill(number)
    page.get_by_label("Expiry (MM/YY)").fill("12/39")
    page.get_by_label("Security code").fill("123")
    page.get_by_label("Name on card").fill("Jane Buyer")


def fill_stripe_card(page: Page, number: str) -> None:
    # localstripe's fake Stripe.js renders plain inputs named by their placeholders.
    page.locator('input[placeholder="number"]').fill(number)
    page.locator('input[placeholder="exp_month"]').fill("12")
    page.locator('input[placeholder="exp_year"]').fill("39")
    page.locator('input[placeholder="cvc"]').fill("123")
    page.locator('input[placeholder="postal_code"]').fill("94107")


def test_pay_with_the_sandbox_card_form(
    context: BrowserContext, merchants: tuple[Merchant, Merchant], artifacts: Path
) -> None:
    ours, _ = merchants
    ours.gateway({"gateway_type": "sandbox", "name": "Card (sandbox)"})
    invoice = ours.invoice()
    page = context.new_page()
    problems = watch(page)

    page.goto(invoice["pay_url"])
    expect(page.get_by_role("heading", name="$125.00")).to_be_visible()
    expect(page.get_by_text("Website redesign")).to_be_visible()
    page.screenshot(path=str(artifacts / "pay-page.png"), full_page=True)

    fill_sandbox_card(page, "4242424242424242")
    expect(page.get_by_label("Card number")).to_have_value("4242 4242 4242 4242")
    page.screenshot(path=str(artifacts / "pay-card-form.png"))
    page.get_by_role("button", name="Pay $125.00").click()

    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    expect(page.get_by_text("•••• 4242")).to_be_visible()
    expect(page.get_by_role("heading", name="Receipt")).to_be_visible()
    page.screenshot(path=str(artifacts / "pay-success.png"), full_page=True)
    assert ours.status_of(invoice) == "paid"
    assert problems == []


def test_a_declined_card_then_a_retry_on_a_phone(
    browser: Browser, merchants: tuple[Merchant, Merchant], artifacts: Path
) -> None:
    ours, _ = merchants
    invoice = ours.invoice(amount=4_200)
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True
    )
    try:
        page = context.new_page()
        page.goto(invoice["pay_url"])
        page.screenshot(path=str(artifacts / "pay-phone.png"), full_page=True)
        fill_sandbox_card(page, "4000000000000002")
        page.get_by_role("button", name="Pay $42.00").click()

        expect(page.get_by_role("heading", name="Payment failed")).to_be_visible()
        expect(page.get_by_text("Your card was declined.")).to_be_visible()
        page.screenshot(path=str(artifacts / "pay-failure-phone.png"), full_page=True)
        page.get_by_role("link", name="Try again").click()
        fill_sandbox_card(page, "4242424242424242")
        page.get_by_role("button", name="Pay $42.00").click()
        expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
        assert ours.status_of(invoice) == "paid"
    finally:
        context.close()


def test_sandbox_three_d_secure_approve(
    context: BrowserContext, merchants: tuple[Merchant, Merchant], artifacts: Path
) -> None:
    ours, _ = merchants
    invoice = ours.invoice()
    page = context.new_page()

    page.goto(invoice["pay_url"])
    fill_sandbox_card(page, "4000002500003155")
    page.get_by_role("button", name="Pay $125.00").click()

    expect(page.get_by_role("heading", name="Confirm this payment")).to_be_visible()
    page.screenshot(path=str(artifacts / "pay-sandbox-3ds.png"))
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    assert ours.status_of(invoice) == "paid"


def stripe_gateway(merchant: Merchant, base_url: str) -> dict[str, Any]:
    return merchant.gateway(
        {
            "gateway_type": "stripe",
            "name": "Stripe",
            "configuration": {
                "secret_key": "sk_test_" + secrets.token_hex(12),
                "publishable_key": PUBLISHABLE_KEY,
                "api_base_url": base_url,
            },
            "supported_currencies": ["USD"],
            "priority": 1,
        }
    )


def choose_gateway(page: Page, name: str) -> None:
    option = page.locator("label.pay-gateway", has_text=name)
    if option.count():
        option.click()


def stripe_pay(page: Page, number: str, amount: str) -> None:
    choose_gateway(page, "Stripe")
    expect(page.locator('input[placeholder="number"]')).to_be_visible()
    fill_stripe_card(page, number)
    page.get_by_role("button", name=f"Pay {amount}").click()


def test_stripe_elements_through_localstripe(
    context: BrowserContext,
    merchants: tuple[Merchant, Merchant],
    stripe_api: StripeCheckoutEmulator,
    artifacts: Path,
) -> None:
    ours, _ = merchants
    stripe_gateway(ours, stripe_api.base_url)
    page = context.new_page()
    problems = watch(page)

    # 4242 succeeds.
    invoice = ours.invoice(amount=3_000)
    page.goto(invoice["pay_url"])
    stripe_pay(page, "4242424242424242", "$30.00")
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible(timeout=20_000)
    assert ours.status_of(invoice) == "paid"

    # 0341 declines with a clear message; a retry with 4242 succeeds.
    invoice = ours.invoice(amount=3_100)
    page.goto(invoice["pay_url"])
    stripe_pay(page, "4000000000000341", "$31.00")
    expect(page.get_by_role("heading", name="Payment failed")).to_be_visible(timeout=20_000)
    expect(page.get_by_text("Your card was declined.")).to_be_visible()
    page.screenshot(path=str(artifacts / "pay-stripe-declined.png"), full_page=True)
    page.get_by_role("link", name="Try again").click()
    stripe_pay(page, "4242424242424242", "$31.00")
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible(timeout=20_000)
    assert ours.status_of(invoice) == "paid"

    # 3155 asks for 3-D Secure: completing it pays.
    invoice = ours.invoice(amount=3_200)
    page.goto(invoice["pay_url"])
    stripe_pay(page, "4000002500003155", "$32.00")
    page.get_by_role("button", name="Complete authentication").click()
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible(timeout=20_000)
    assert ours.status_of(invoice) == "paid"

    # Failing it leaves the invoice open, with a failure page and a way to try again.
    invoice = ours.invoice(amount=3_300)
    page.goto(invoice["pay_url"])
    stripe_pay(page, "4000002500003155", "$33.00")
    page.screenshot(path=str(artifacts / "pay-stripe-3ds.png"))
    page.get_by_role("button", name="Fail authentication").click()
    expect(page.get_by_role("heading", name="Payment failed")).to_be_visible(timeout=20_000)
    expect(page.get_by_role("link", name="Pay another way")).to_be_visible()
    assert ours.status_of(invoice) == "open"
    assert problems == []


def test_paypal_redirect_flow(
    context: BrowserContext,
    merchants: tuple[Merchant, Merchant],
    paypal_emulator: PayPalEmulator,
    artifacts: Path,
) -> None:
    ours, _ = merchants
    ours.gateway(
        {
            "gateway_type": "paypal",
            "name": "PayPal",
            "configuration": {
                "client_id": paypal_emulator.client_id,
                "client_secret": paypal_emulator.client_secret,
                "api_base_url": paypal_emulator.base_url,
            },
            "supported_currencies": ["USD"],
        }
    )
    invoice = ours.invoice(amount=5_500)
    page = context.new_page()

    page.goto(invoice["pay_url"])
    page.locator("label.pay-method", has_text="PayPal").click()
    page.screenshot(path=str(artifacts / "pay-paypal-choice.png"), full_page=True)
    page.get_by_role("button", name="Continue to PayPal").click()

    expect(page.get_by_role("heading", name="PayPal Checkout")).to_be_visible()
    page.get_by_role("button", name="Pay with PayPal").click()
    expect(page).to_have_url(re.compile(r"/pay/[^?]+\?payment=pay_"))
    expect(page.get_by_role("heading", name="Payment successful")).to_be_visible()
    assert ours.status_of(invoice) == "paid"
