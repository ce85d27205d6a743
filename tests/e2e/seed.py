"""A company with something on every page, set up through the live server's JSON API.

Gateways (a sandbox with a distinctive internal name, a custom gateway that answers and
sends webhooks, one whose connection test and health checks fail), invoices with
succeeded, declined and in-review payments, an open invoice to pay, a routing rule, a
webhook endpoint with deliveries, an alert recipient, an API key, an invited member, an
inbound gateway event and a few rounds of health checks. The audit log records it all.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

import httpx

from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD
from tests.e2e.workers import check_rounds
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.monitoring.helpers import custom_payload
from tests.webhooks.inbound.helpers import new_secret

# Customers must never see it (the pay page shows public labels only).
INTERNAL_NAME = "Zebra-Internal-7731"
PUBLIC_LABEL = "Card (backup processor)"
REVIEW_CARD = "4000000000000036"  # the sandbox answers one minor unit less: review
DECLINE_CARD = "4000000000009995"
SUCCESS_CARD = "4242424242424242"


@dataclass(frozen=True)
class Seeded:
    email: str
    password: str
    invoice_id: str  # the one whose payment waits for review
    pay_url: str  # of an open invoice
    failing_gateway_id: str
    sandbox_id: str
    acquirer_id: str
    endpoint_id: str
    event_id: str
    rule_id: str


class _Api:
    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=30)

    def send(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        assert response.status_code == expect, f"{method} {path}: {response.text}"
        return response.json()

    def invoice(self, amount: int, email: str, currency: str = "USD") -> dict[str, Any]:
        payload = {
            "customer": {"name": "Jane Buyer", "email": email},
            "currency": currency,
            "line_items": [
                {"description": "Website redesign", "quantity": 1, "unit_amount": amount}
            ],
            "due_date": "2031-03-15",
            "memo": "Thank you for your business!",
        }
        body: dict[str, Any] = self.send("POST", "/api/v1/invoices", 201, json=payload)
        return body

    def pay(self, invoice: dict[str, Any], gateway_id: str, card: str) -> dict[str, Any]:
        body: dict[str, Any] = self.send(
            "POST",
            f"/api/v1/invoices/{invoice['id']}/payments",
            201,
            json={"gateway_id": gateway_id, "payment_method": card},
            headers={"Idempotency-Key": secrets.token_hex(8)},
        )
        return body


def seed_company(
    base_url: str, settings: Settings, emulator: CustomGatewayEmulator, name: str
) -> Seeded:
    api = _Api(base_url)
    email = f"owner-{secrets.token_hex(4)}@example.com"
    tokens = api.send(
        "POST",
        "/api/v1/auth/register",
        201,
        json={"email": email, "password": STRONG_PASSWORD, "company_name": name},
    )
    api.http.headers["Authorization"] = f"Bearer {tokens['access_token']}"
    try:
        return _fill(api, settings, emulator, email)
    finally:
        api.http.close()


def _fill(api: _Api, settings: Settings, emulator: CustomGatewayEmulator, email: str) -> Seeded:
    gateways = "/api/v1/gateways"
    sandbox = api.send(
        "POST",
        gateways,
        201,
        json={"gateway_type": "sandbox", "name": INTERNAL_NAME, "supported_currencies": ["USD"]},
    )
    # A second card gateway, so the pay page offers a choice, named by public labels.
    api.send(
        "POST",
        gateways,
        201,
        json={
            "gateway_type": "sandbox",
            "name": "Sandbox backup",
            "public_label": PUBLIC_LABEL,
            "supported_currencies": ["USD"],
        },
    )
    # A custom gateway that answers and signs its webhooks, and one with a wrong key.
    emulator.webhook_secret = new_secret()
    acquirer_payload = custom_payload(emulator, "Acquirer One")
    acquirer_payload["configuration"]["webhook_secret"] = emulator.webhook_secret
    acquirer = api.send("POST", gateways, 201, json=acquirer_payload)
    legacy_payload = custom_payload(emulator, "Legacy acquirer")
    legacy_payload["configuration"]["api_key"] = "cgw_wrong_key_00000000"
    legacy = api.send("POST", gateways, 201, json=legacy_payload)
    assert api.send("POST", f"{gateways}/{legacy['id']}/test")["ok"] is False
    for gateway, threshold in ((acquirer, 2), (legacy, 1)):
        api.send(
            "PATCH",
            f"{gateways}/{gateway['id']}/monitoring",
            json={"interval_minutes": 1, "failure_threshold": threshold},
        )

    # Subscribed before the payments, so their events make deliveries to list.
    endpoint = api.send(
        "POST",
        "/api/v1/webhook-endpoints",
        201,
        json={
            "url": "http://127.0.0.1:9/orders",  # resolved on create: no DNS in tests
            "description": "Order system",
            "event_types": ["payment.succeeded", "payment.failed", "invoice.paid"],
        },
    )
    for index, amount in enumerate((12_500, 4_000, 99_900)):
        paid = api.invoice(amount, f"buyer{index}@customer.example.com")
        api.pay(paid, sandbox["id"], SUCCESS_CARD)
    api.pay(api.invoice(7_000, "declined@customer.example.com"), sandbox["id"], DECLINE_CARD)
    in_review = api.invoice(6_000, "review@customer.example.com")
    api.pay(in_review, sandbox["id"], REVIEW_CARD)
    open_invoice = api.invoice(18_000, "open@customer.example.com")
    api.send("POST", f"/api/v1/webhook-endpoints/{endpoint['id']}/test", 202)

    rule = api.send(
        "POST",
        "/api/v1/routing-rules",
        201,
        json={
            "name": "Large dollars to the acquirer",
            "conditions": {"currencies": ["USD"], "amount_min": 50_000},
            "action": {"type": "priority", "gateway_ids": [acquirer["id"], sandbox["id"]]},
        },
    )
    api.send("POST", "/api/v1/alert-recipients", 201, json={"email": "oncall@example.com"})
    api.send(
        "POST",
        "/api/v1/api-keys",
        201,
        json={"name": "Billing server", "scopes": ["gateways:read"]},
    )
    api.send(
        "POST", "/api/v1/members", 201, json={"email": "new.hire@example.com", "role": "viewer"}
    )

    event = {
        "id": "evt_every_page_1",
        "type": "payment.succeeded",
        "data": {"id": "pay_gw_unknown", "status": "succeeded", "amount": 1200, "currency": "USD"},
    }
    delivery = emulator.sign_event(event)
    api.send("POST", f"/webhooks/{acquirer['id']}", content=delivery.body, headers=delivery.headers)
    events = api.send("GET", "/api/v1/webhook-events", params={"gateway_id": acquirer["id"]})
    # A change each, last (nothing above depends on them): the history pages list versions
    # with a Restore button.
    api.send("PATCH", f"{gateways}/{acquirer['id']}", json={"public_label": "Card (acquirer)"})
    api.send(
        "PATCH",
        f"/api/v1/webhook-endpoints/{endpoint['id']}",
        json={"description": "Order system (EU)"},
    )
    check_rounds(settings, [acquirer["id"], legacy["id"]], 3)
    return Seeded(
        email=email,
        password=STRONG_PASSWORD,
        invoice_id=in_review["id"],
        pay_url=open_invoice["pay_url"],
        failing_gateway_id=legacy["id"],
        sandbox_id=sandbox["id"],
        acquirer_id=acquirer["id"],
        endpoint_id=endpoint["id"],
        event_id=events["data"][0]["id"],
        rule_id=rule["id"],
    )
