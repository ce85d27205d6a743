"""The emulators keep the documented contracts the adapters will rely on later."""

from __future__ import annotations

import httpx
from standardwebhooks import Webhook

from paygate.gateways.adapters.sandbox import sandbox_card_for_decline
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.square import SquareEmulator


def _client(base_url: str, api_key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {api_key}"}, timeout=5
    )


PAYMENT = {"amount": 1050, "currency": "USD", "reference": "pay_1"}


async def test_custom_payment_lifecycle(custom_gateway_emulator: CustomGatewayEmulator) -> None:
    emu = custom_gateway_emulator
    async with _client(emu.base_url, emu.api_key) as client:
        body = {**PAYMENT, "payment_method": "tok_4242424242424242"}
        created = await client.post("/payments", json=body, headers={"Idempotency-Key": "k1"})
        assert created.status_code == 201
        payment = created.json()
        assert (payment["status"], payment["amount"], payment["currency"]) == (
            "succeeded",
            1050,
            "USD",
        )
        replay = await client.post("/payments", json=body, headers={"Idempotency-Key": "k1"})
        assert replay.json()["id"] == payment["id"]
        conflict = await client.post(
            "/payments", json={**body, "amount": 1}, headers={"Idempotency-Key": "k1"}
        )
        assert conflict.status_code == 409
        assert conflict.json()["error"]["type"] == "idempotency_conflict"
        missing_key = await client.post("/payments", json=body)
        assert missing_key.status_code == 400

        refund = await client.post(
            f"/payments/{payment['id']}/refunds",
            json={"amount": 50},
            headers={"Idempotency-Key": "r1"},
        )
        assert refund.status_code == 201
        assert refund.json()["amount"] == 50
        too_much = await client.post(
            f"/payments/{payment['id']}/refunds",
            json={"amount": 2000},
            headers={"Idempotency-Key": "r2"},
        )
        assert too_much.status_code == 400
        assert too_much.json()["error"]["param"] == "amount"
        fetched = (await client.get(f"/payments/{payment['id']}")).json()
        assert fetched["amount_refunded"] == 50
        assert len(fetched["refunds"]) == 1
        assert (await client.get("/payments/pay_nope")).status_code == 404


async def test_custom_decline_and_action(custom_gateway_emulator: CustomGatewayEmulator) -> None:
    emu = custom_gateway_emulator
    card = sandbox_card_for_decline("insufficient_funds")
    async with _client(emu.base_url, emu.api_key) as client:
        declined = await client.post(
            "/payments",
            json={**PAYMENT, "payment_method": f"tok_{card.number}"},
            headers={"Idempotency-Key": "d1"},
        )
        assert declined.status_code == 201
        assert declined.json()["status"] == "failed"
        assert declined.json()["decline_code"] == "insufficient_funds"

        action = await client.post(
            "/payments",
            json={
                **PAYMENT,
                "payment_method": "tok_4000002500003155",
                "return_url": "https://paygate.test/return?x=1",
            },
            headers={"Idempotency-Key": "a1"},
        )
        payment = action.json()
        assert payment["status"] == "requires_action"
        redirect = await client.get(payment["redirect_url"])
        assert redirect.status_code == 303
        assert redirect.headers["location"] == (
            f"https://paygate.test/return?x=1&payment_id={payment['id']}"
        )
        assert (await client.get(f"/payments/{payment['id']}")).json()["status"] == "succeeded"

    delivery = emu.outbox[-1]
    assert delivery.event["type"] == "payment.succeeded"
    # A Standard Webhooks library verifies what the emulator signed.
    verified = Webhook(emu.webhook_secret).verify(delivery.body, delivery.headers)
    assert verified["data"]["id"] == payment["id"]


async def test_paypal_token_errors(paypal_emulator: PayPalEmulator) -> None:
    emu = paypal_emulator
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=5) as client:
        no_grant = await client.post("/v1/oauth2/token", auth=(emu.client_id, emu.client_secret))
        assert no_grant.status_code == 400
        assert no_grant.json()["error"] == "unsupported_grant_type"
        no_auth = await client.post("/v1/oauth2/token", data={"grant_type": "client_credentials"})
        assert no_auth.status_code == 401
        assert no_auth.json() == {
            "error": "invalid_client",
            "error_description": "Client Authentication failed",
        }
        ok = await client.post(
            "/v1/oauth2/token",
            auth=(emu.client_id, emu.client_secret),
            data={"grant_type": "client_credentials"},
        )
        body = ok.json()
        assert set(body) == {"scope", "access_token", "token_type", "app_id", "expires_in", "nonce"}
        assert body["token_type"] == "Bearer"
        assert body["access_token"] in emu.tokens


async def test_square_location_routes(square_emulator: SquareEmulator) -> None:
    emu = square_emulator
    async with _client(emu.base_url, emu.access_token) as client:
        main = await client.get("/v2/locations/main", headers={"Square-Version": "2025-01-23"})
        assert main.json()["location"]["id"] == emu.location_id
        missing = await client.get("/v2/locations/LNOPE")
        assert missing.status_code == 404
        assert missing.json()["errors"][0]["code"] == "NOT_FOUND"
    assert emu.square_versions == ["2025-01-23"]
    async with httpx.AsyncClient(base_url=emu.base_url, timeout=5) as client:
        denied = await client.get("/v2/locations")
        assert denied.status_code == 401
        assert denied.json()["errors"][0]["category"] == "AUTHENTICATION_ERROR"
