"""The public invoice payment page, driven like a browser: no account, cookies and CSRF
from the page, form posts. Two companies in every scenario."""

from __future__ import annotations

import html
import re
import secrets
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import func, select

from paygate.db import Database
from paygate.payments.models import Payment
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway, stripe_payload
from tests.payments.helpers import create_invoice, get_invoice, sandbox_gateway
from tests.web.helpers import csrf_of, new_client

SUCCESS_CARD = "4242 4242 4242 4242"
DECLINED_CARD = "4000 0000 0000 0002"
ACTION_CARD = "4000 0025 0000 3155"
CANARY = "sk_test_CANARY" + secrets.token_hex(10)


@pytest.fixture
async def customer(app: Any) -> Any:
    """The invoice's customer: a browser of its own, never signed in."""
    async with new_client(app) as browser:
        yield browser


def path_of(invoice: dict[str, Any]) -> str:
    return urlsplit(str(invoice["pay_url"])).path


def hidden(page: str, name: str) -> str:
    match = re.search(rf'name="{name}" value="([^"]*)"', page)
    assert match, f"no {name} in the page"
    return html.unescape(match.group(1))


def card_form(page: str, card: str = SUCCESS_CARD, **overrides: str) -> dict[str, str]:
    data = {
        "csrf_token": csrf_of(page),
        "nonce": hidden(page, "nonce"),
        "gateway_id": hidden(page, "gateway_id"),
        "method_type": "card",
        "amount": "",
        "card_number": card,
        "card_expiry": "12/39",
        "card_cvc": "123",
        "card_name": "Jane Buyer",
    }
    data.update(overrides)
    return data


async def count_payments(database: Database, invoice_id: str) -> int:
    async with database.transaction() as session:
        statement = (
            select(func.count()).select_from(Payment).where(Payment.invoice_id == invoice_id)
        )
        return int((await session.execute(statement)).scalar_one())


async def pay_by_card(
    customer: httpx.AsyncClient, invoice: dict[str, Any], card: str = SUCCESS_CARD, **fields: str
) -> tuple[httpx.Response, dict[str, str]]:
    page = await customer.get(path_of(invoice))
    assert page.status_code == 200, page.text
    form = card_form(page.text, card, **fields)
    return await customer.post(f"{path_of(invoice)}/payments", data=form), form


async def test_the_page_shows_the_invoice_and_only_eligible_gateways(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    # Internal names are the team's: customers see public labels only.
    await sandbox_gateway(client, tenant, name="Zebra-Internal-7731")
    await sandbox_gateway(client, tenant, name="Switched off", enabled=False)
    await sandbox_gateway(client, tenant, name="Euro only", supported_currencies=["EUR"])
    await sandbox_gateway(client, tenant, name="Too small", max_amount=100)
    await sandbox_gateway(client, other_tenant, name="Rival gateway")
    stripe = stripe_payload("http://127.0.0.1:9", secret_key=CANARY)
    stripe["public_label"] = "Visa, Mastercard & Amex"
    await create_gateway(client, tenant, stripe)
    invoice = await create_invoice(
        client,
        tenant,
        line_items=[
            {"description": "Design sprint", "quantity": 2, "unit_amount": 50_000},
            {"description": "Hosting", "quantity": 1, "unit_amount": 2_550},
        ],
        due_date="2031-03-15",
        memo="Thank you for your business.",
    )

    page = await customer.get(path_of(invoice))

    assert page.status_code == 200
    text = page.text
    for expected in (
        "Acme Invoicing",
        invoice["number"],
        "Jane Buyer",
        "Design sprint",
        "Hosting",
        "$500.00",
        "$1,025.50",
        "March 15, 2031",
        "Thank you for your business.",
        "Test card (sandbox)",
        "Visa, Mastercard &amp; Amex",
        # Stripe.js gets the publishable key and its base URL, nothing else.
        'data-publishable-key="pk_test_TYooMQauvdEDq54NiTphI7jx"',
        'data-stripe-js="http://127.0.0.1:9/js.stripe.com/v3/"',
    ):
        assert expected in text, expected
    for absent in (
        "Zebra-Internal-7731",
        "Stripe US",
        "Switched off",
        "Euro only",
        "Too small",
        "Rival gateway",
        CANARY,
        "sk_test_",
    ):
        assert absent not in text, absent
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


async def test_amounts_follow_the_currency_exponent(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=5_000, currency="JPY")

    page = await customer.get(path_of(invoice))

    assert "¥5,000" in page.text
    assert "¥50.00" not in page.text


async def test_without_an_eligible_gateway_the_page_says_whom_to_contact(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    await sandbox_gateway(client, other_tenant)
    await sandbox_gateway(client, tenant, supported_currencies=["EUR"])
    invoice = await create_invoice(client, tenant)

    page = await customer.get(path_of(invoice))

    assert "Online payment is not available" in page.text
    assert f"mailto:{tenant.email}" in page.text
    assert other_tenant.email not in page.text
    assert "card_number" not in page.text


async def test_an_unknown_link_is_the_html_404_page(customer: httpx.AsyncClient) -> None:
    response = await customer.get("/pay/" + secrets.token_urlsafe(32))

    assert response.status_code == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "Page not found" in response.text


async def test_paying_with_the_sandbox_card_form(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    customer: httpx.AsyncClient,
    database: Database,
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    page = await customer.get(path_of(invoice))
    form = card_form(page.text)

    # Without the CSRF token nothing happens.
    refused = await customer.post(
        f"{path_of(invoice)}/payments", data={**form, "csrf_token": "forged-" + "x" * 30}
    )
    assert refused.status_code == 403
    assert await count_payments(database, invoice["id"]) == 0

    paid = await customer.post(f"{path_of(invoice)}/payments", data=form)
    assert paid.status_code == 303, paid.text
    location = paid.headers["location"]
    assert re.fullmatch(rf"{path_of(invoice)}\?payment=pay_\w+", location)

    # A double submit of the same form answers the same payment: one charge.
    again = await customer.post(f"{path_of(invoice)}/payments", data=form)
    assert again.status_code == 303
    assert again.headers["location"] == location
    assert await count_payments(database, invoice["id"]) == 1

    result = await customer.get(location)
    assert "Payment successful" in result.text
    assert "Receipt" in result.text
    assert "•••• 4242" in result.text
    assert "4242 4242 4242 4242" not in result.text.split("pay-test-cards")[0]
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"

    # Paid: the page is a receipt; there is nothing left to pay.
    receipt = await customer.get(path_of(invoice))
    assert "Paid in full" in receipt.text
    assert 'name="card_number"' not in receipt.text


async def test_a_decline_shows_the_failure_and_a_retry(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    gateway = await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)

    declined, _ = await pay_by_card(customer, invoice, DECLINED_CARD)
    result = await customer.get(declined.headers["location"])

    assert "Payment failed" in result.text
    # Plain words for the customer, never the gateway's own message.
    assert "Your card was declined. Please use another card, or contact your bank." in result.text
    assert "Declined by the issuer" not in result.text
    assert "Try again" in result.text
    assert "Pay another way" in result.text
    assert f"?gateway={gateway['id']}#ways" in result.text
    # The form is there again, with a fresh nonce, and a retry goes through.
    paid, _ = await pay_by_card(customer, invoice)
    assert "Payment successful" in (await customer.get(paid.headers["location"])).text
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"


async def test_each_decline_reads_in_customer_words(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    await sandbox_gateway(client, tenant)
    for card, words in (
        ("4000 0000 0000 9995", "Your card has insufficient funds."),
        ("4000 0000 0000 0069", "Your card has expired."),
        ("4000 0000 0000 0127", "security code is incorrect."),
        # A fraud suspicion reads as a plain decline.
        ("4100 0000 0000 0019", "Your card was declined."),
    ):
        invoice = await create_invoice(client, tenant)
        declined, _ = await pay_by_card(customer, invoice, card)
        result = (await customer.get(declined.headers["location"])).text
        assert words in result, card
        assert "fraud" not in result.lower()


async def test_card_mistakes_come_back_inline_without_the_number(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    customer: httpx.AsyncClient,
    database: Database,
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)

    response, _ = await pay_by_card(
        customer, invoice, "4242 4242 4242 4241", card_expiry="01/20", card_cvc="x"
    )

    assert response.status_code == 422
    assert "This card number is not valid." in response.text
    assert "This card has expired." in response.text
    assert "Enter the 3 or 4 digits" in response.text
    assert "4242 4242 4242 4241" not in response.text
    assert 'value="Jane Buyer"' in response.text
    assert await count_payments(database, invoice["id"]) == 0


async def test_three_d_secure_through_the_sandbox_authorize_page(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    customer: httpx.AsyncClient,
    settings: Settings,
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)

    started, _ = await pay_by_card(customer, invoice, ACTION_CARD)
    assert started.status_code == 303
    bank = started.headers["location"]
    assert bank.startswith(f"{settings.base_url}/sandbox/authorize/")
    page = await customer.get(bank.removeprefix(settings.base_url))
    assert "Approve" in page.text
    assert "Decline" in page.text
    back = await customer.post(
        urlsplit(bank).path,
        data={
            "csrf_token": csrf_of(page.text),
            "return_to": hidden(page.text, "return_to"),
            "outcome": "approve",
        },
    )
    assert back.status_code == 303
    assert back.headers["location"].endswith("outcome=approved")
    returned = await customer.get(back.headers["location"].removeprefix(settings.base_url))
    assert returned.status_code == 303
    result = await customer.get(returned.headers["location"])
    assert "Payment successful" in result.text
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"


async def test_a_partial_payment_in_decimal_units(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, allow_partial_payments=True)

    too_precise, _ = await pay_by_card(customer, invoice, amount="12.555")
    assert too_precise.status_code == 422
    assert "at most 2 decimals" in too_precise.text
    too_much, _ = await pay_by_card(customer, invoice, amount="500")
    assert too_much.status_code == 422

    paid, _ = await pay_by_card(customer, invoice, amount="12.50")
    result = await customer.get(paid.headers["location"])
    assert "$12.50 paid" in result.text
    assert "$112.50 remains due" in result.text
    body = await get_invoice(client, tenant, invoice["id"])
    assert (body["status"], body["amount_paid"]) == ("partially_paid", 1250)
    assert "Payments received" in (await customer.get(path_of(invoice))).text


async def test_void_and_draft_invoices_say_so(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    gateway = await sandbox_gateway(client, tenant)
    void = await create_invoice(client, tenant)
    response = await client.post(f"/api/v1/invoices/{void['id']}/void", headers=tenant.headers)
    assert response.status_code == 200
    draft = await create_invoice(client, tenant, draft=True)

    voided = await customer.get(path_of(void))
    drafted = await customer.get(path_of(draft))

    assert "This invoice was voided" in voided.text
    assert "not ready yet" in drafted.text
    for page in (voided, drafted):
        assert 'name="card_number"' not in page.text
    # And posting anyway is refused without a payment.
    form = {
        "csrf_token": customer.cookies["pg_csrf"],
        "nonce": secrets.token_urlsafe(18),
        "gateway_id": gateway["id"],
        "card_number": SUCCESS_CARD,
        "card_expiry": "12/39",
        "card_cvc": "123",
        "card_name": "Jane Buyer",
    }
    refused = await customer.post(f"{path_of(void)}/payments", data=form)
    assert refused.status_code == 409
    assert "cannot be paid" in refused.text


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example/steal",
        "//evil.example/steal",
        "/\\evil.example",
        "javascript:alert(1)",
        "{base}.evil.example/x",
        "{base}@evil.example/x",
        "",
    ],
)
async def test_the_sandbox_authorize_page_refuses_open_redirects(
    customer: httpx.AsyncClient, settings: Settings, target: str
) -> None:
    target = target.format(base=settings.base_url)
    page = await customer.get("/sandbox/authorize/sbx_pay_1", params={"return_to": target})
    assert page.status_code == 400
    assert "Approve" not in page.text
    good = await customer.get("/sandbox/authorize/sbx_pay_1", params={"return_to": "/pay/x"})
    posted = await customer.post(
        "/sandbox/authorize/sbx_pay_1",
        data={"csrf_token": csrf_of(good.text), "return_to": target, "outcome": "approve"},
    )
    assert posted.status_code == 400
    assert "location" not in posted.headers


async def test_the_sandbox_authorize_page_returns_on_paygate(
    customer: httpx.AsyncClient, settings: Settings
) -> None:
    for target in ("/payments/pay_1/return", f"{settings.base_url}/payments/pay_1/return?x=1"):
        page = await customer.get("/sandbox/authorize/sbx_pay_1", params={"return_to": target})
        assert page.status_code == 200
        posted = await customer.post(
            "/sandbox/authorize/sbx_pay_1",
            data={"csrf_token": csrf_of(page.text), "return_to": target, "outcome": "decline"},
        )
        assert posted.status_code == 303
        separator = "&" if "?" in target else "?"
        assert posted.headers["location"] == f"{target}{separator}outcome=failed"


async def test_another_companys_invoice_cannot_use_this_companys_gateways(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    customer: httpx.AsyncClient,
    database: Database,
) -> None:
    ours = await sandbox_gateway(client, tenant)
    await sandbox_gateway(client, other_tenant)
    theirs = await create_invoice(client, other_tenant)

    response, _ = await pay_by_card(customer, theirs, gateway_id=ours["id"])

    assert response.status_code in (404, 422)
    assert await count_payments(database, theirs["id"]) == 0
    assert (await get_invoice(client, other_tenant, theirs["id"]))["status"] == "open"


async def test_no_page_shows_a_secret(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    await sandbox_gateway(client, tenant)
    await create_gateway(client, tenant, stripe_payload("http://127.0.0.1:9", secret_key=CANARY))
    invoice = await create_invoice(client, tenant)
    declined, _ = await pay_by_card(customer, invoice, DECLINED_CARD)
    paid, _ = await pay_by_card(customer, invoice)

    pages = [
        await customer.get(path_of(invoice)),
        await customer.get(declined.headers["location"]),
        await customer.get(paid.headers["location"]),
    ]

    for page in pages:
        assert CANARY not in page.text
        assert CANARY[-10:] not in page.text
        assert "whsec_" not in page.text


async def test_a_custom_gateway_serves_api_payments_only(
    client: httpx.AsyncClient, tenant: Tenant, customer: httpx.AsyncClient
) -> None:
    """Its contract gives the page no way to make the token it needs: it is not offered."""
    await create_gateway(
        client,
        tenant,
        {
            "name": "House processor",
            "gateway_type": "custom",
            "configuration": {"base_url": "https://pay.example.com", "api_key": "k" * 24},
        },
    )
    invoice = await create_invoice(client, tenant)
    page = await customer.get(path_of(invoice))
    assert "House processor" not in page.text
    assert "Online payment is not available" in page.text
