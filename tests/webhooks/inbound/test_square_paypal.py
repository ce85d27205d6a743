"""Square and PayPal webhooks against their emulators: registration through each
provider's API, signatures (Square's HMAC of URL and body; PayPal's transmission checked
by its verify-webhook-signature API), and their events settling payments."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from paygate.db import Database
from paygate.gateways.adapters.paypal_calls import clear_token_cache
from paygate.kit.jobs_context import JobContext
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.square import SquareEmulator
from tests.fakes.square_webhooks import square_signature
from tests.gateways.helpers import create_gateway
from tests.payments.helpers import create_invoice, pay
from tests.payments.test_gateways_through_the_api import RETURN_URL, press_form
from tests.webhooks.inbound.helpers import deliver, event, payment_of, run_webhook_jobs


async def _register(client: httpx.AsyncClient, tenant: Tenant, gateway_id: str) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/gateways/{gateway_id}/webhook/register", headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


# --- Square -------------------------------------------------------------------------------


@pytest.fixture
async def square(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, square_emulator: SquareEmulator
) -> dict[str, Any]:
    return await create_gateway(
        client,
        tenant,
        {
            "name": "Square",
            "gateway_type": "square",
            "configuration": {
                "access_token": square_emulator.access_token,
                "application_id": "sandbox-sq0idb-paygate-tests",
                "location_id": square_emulator.location_id,
                "api_base_url": square_emulator.base_url,
            },
            "supported_currencies": ["USD"],
        },
    )


async def test_square_registration_signature_and_a_hosted_payment_settled_by_webhook(
    client: httpx.AsyncClient,
    tenant: Tenant,
    square: dict[str, Any],
    square_emulator: SquareEmulator,
    settings: Settings,
    database: Database,
    jobs: JobContext,
) -> None:
    registered = await _register(client, tenant, square["id"])
    assert registered["stored"] == ["webhook_signature_key"]
    subscription = square_emulator.webhooks.subscriptions[registered["endpoint_id"]]
    assert subscription["notification_url"] == f"{settings.base_url}/webhooks/{square['id']}"
    assert subscription["signature_key"] not in str(registered)

    # A payment link: the customer pays at Square but never comes back to paygate.
    invoice = await create_invoice(client, tenant)
    started = await pay(
        client,
        tenant,
        invoice["id"],
        gateway_id=square["id"],
        payment_method=None,
        return_url=RETURN_URL,
    )
    assert started["status"] == "requires_action"
    await press_form(started["next_action"]["redirect_url"], "Pay")
    paid = next(p for p in square_emulator.payments.values() if p["status"] == "COMPLETED")
    (delivery,) = square_emulator.payment_event(paid["id"])

    # Square signs the URL it was given plus the body: another URL or key does not verify.
    other_url = square_signature(
        subscription["signature_key"], "https://elsewhere.test/x", delivery.body
    )
    wrong_key = square_signature("not-the-key", delivery.url or "", delivery.body)
    for bad in (other_url, wrong_key):
        refused = await deliver(
            client, square["id"], delivery, {"x-square-hmacsha256-signature": bad}
        )
        assert refused.status_code == 400
        assert "signature key and notification URL" in refused.json()["detail"]
    missing = await deliver(client, square["id"], delivery.body, {})
    assert "header is missing" in missing.json()["detail"]

    accepted = await deliver(client, square["id"], delivery)
    assert accepted.status_code == 200, accepted.text
    assert await run_webhook_jobs(database, jobs) == ["processed"]
    assert (await payment_of(client, tenant, started["id"]))["status"] == "succeeded"

    # A refund made in Square's dashboard, then a dispute the payment loses.
    square_emulator.refunds["R1"] = {
        "id": "R1",
        "status": "COMPLETED",
        "amount_money": {"amount": 500, "currency": "USD"},
        "payment_id": paid["id"],
        "order_id": paid["order_id"],
        "location_id": square_emulator.location_id,
    }
    (refund,) = square_emulator.refund_event("R1", "refund.created")
    (opened,) = square_emulator.dispute_event(paid["id"], "EVIDENCE_REQUIRED", dispute_id="D1")
    for each in (refund, opened):
        assert (await deliver(client, square["id"], each)).status_code == 200
    assert await run_webhook_jobs(database, jobs) == ["processed", "processed"]
    after = await payment_of(client, tenant, started["id"])
    assert after["amount_refunded"] == 500


async def test_square_rotation_keeps_the_old_key_during_its_grace(
    client: httpx.AsyncClient,
    tenant: Tenant,
    square: dict[str, Any],
    square_emulator: SquareEmulator,
) -> None:
    first = await _register(client, tenant, square["id"])
    old_key = square_emulator.webhooks.subscriptions[first["endpoint_id"]]["signature_key"]
    second = await _register(client, tenant, square["id"])
    new_key = square_emulator.webhooks.subscriptions[second["endpoint_id"]]["signature_key"]
    body = b'{"type":"ping","event_id":"e-rot","data":{}}'
    url = second["url"]
    for number, key in enumerate((old_key, new_key)):
        signed = body.replace(b"e-rot", f"e-rot-{number}".encode())
        headers = {"x-square-hmacsha256-signature": square_signature(key, url, signed)}
        answer = await deliver(client, square["id"], signed, headers)
        assert answer.status_code == 200, answer.text
        label = "previous" if key == old_key else "current"
        assert label in (await event(client, tenant, answer.json()["id"]))["verification"]


# --- PayPal -------------------------------------------------------------------------------


@pytest.fixture
async def paypal(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, paypal_emulator: PayPalEmulator
) -> dict[str, Any]:
    clear_token_cache()
    return await create_gateway(
        client,
        tenant,
        {
            "name": "PayPal",
            "gateway_type": "paypal",
            "configuration": {
                "client_id": paypal_emulator.client_id,
                "client_secret": paypal_emulator.client_secret,
                "api_base_url": paypal_emulator.base_url,
            },
            "supported_currencies": ["USD"],
            "payment_method_types": ["paypal"],
        },
    )


async def test_paypal_registration_verification_api_and_a_pending_capture_completed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    paypal: dict[str, Any],
    paypal_emulator: PayPalEmulator,
    database: Database,
    jobs: JobContext,
) -> None:
    unconfigured = await deliver(client, paypal["id"], b"{}", {"paypal-auth-algo": "x"})
    assert unconfigured.status_code == 400
    registered = await _register(client, tenant, paypal["id"])
    assert registered["stored"] == ["webhook_id"]
    webhook_id = registered["endpoint_id"]
    gateway = (await client.get(f"/api/v1/gateways/{paypal['id']}", headers=tenant.headers)).json()
    assert gateway["configuration"]["webhook_id"] == webhook_id

    # PayPal holds the capture for review: paygate's payment waits in processing.
    paypal_emulator.capture_status = "PENDING"
    invoice = await create_invoice(client, tenant)
    started = await pay(
        client,
        tenant,
        invoice["id"],
        gateway_id=paypal["id"],
        payment_method=None,
        payment_method_type="paypal",
        return_url=RETURN_URL,
    )
    back = urlsplit(await press_form(started["next_action"]["redirect_url"], "Pay with PayPal"))
    assert (await client.get(f"{back.path}?{back.query}")).status_code == 303
    assert (await payment_of(client, tenant, started["id"]))["status"] == "processing"

    order_id = paypal_emulator.orders_for(started["id"])[0]["id"]
    paypal_emulator.capture_of(order_id)["status"] = "COMPLETED"  # type: ignore[index]
    (delivery,) = paypal_emulator.capture_event(order_id)
    # A transmission signed for another webhook id, or its body changed, fails at PayPal.
    forged = paypal_emulator.webhooks.sign(delivery.body, "ANOTHERWEBHOOK")
    tampered = delivery.body.replace(b"COMPLETED", b"DECLINED", 1)
    for body, headers in ((delivery.body, forged), (tampered, delivery.headers)):
        refused = await deliver(client, paypal["id"], body, headers)
        assert refused.status_code == 400, refused.text
        assert "verify-webhook-signature answered FAILURE" in refused.json()["detail"]
    headers = {k: v for k, v in delivery.headers.items() if k != "paypal-transmission-sig"}
    missing = await deliver(client, paypal["id"], delivery.body, headers)
    assert "PAYPAL-TRANSMISSION-SIG" in missing.json()["detail"]

    accepted = await deliver(client, paypal["id"], delivery)
    assert accepted.status_code == 200, accepted.text
    assert await run_webhook_jobs(database, jobs) == ["processed"]
    assert (await payment_of(client, tenant, started["id"]))["status"] == "succeeded"
    seen = await event(client, tenant, accepted.json()["id"])
    assert seen["verification"] == "verified by PayPal's verify-webhook-signature API"

    # PayPal's API down: not verified now, 503 so PayPal sends it again.
    (dispute,) = paypal_emulator.dispute_event(order_id)
    paypal_emulator.knobs.fail_status = 503
    unavailable = await deliver(client, paypal["id"], dispute)
    paypal_emulator.knobs.reset()
    assert unavailable.status_code == 503
    assert unavailable.headers["retry-after"]
    assert (await deliver(client, paypal["id"], dispute)).status_code == 200
    assert await run_webhook_jobs(database, jobs) == ["processed"]
