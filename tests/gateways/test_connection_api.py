"""Test connection, through the API, with the stored credentials against each gateway's server."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.paypal import PayPalEmulator
from tests.fakes.servers import closed_port_url
from tests.fakes.square import SquareEmulator
from tests.gateways.helpers import audit_entries, create_gateway, sandbox_payload, stripe_payload


async def run_test(
    client: httpx.AsyncClient, tenant: Tenant, payload: dict[str, Any]
) -> dict[str, Any]:
    gateway = await create_gateway(client, tenant, payload)
    response = await client.post(f"/api/v1/gateways/{gateway['id']}/test", headers=tenant.headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    stored = (await client.get(f"/api/v1/gateways/{gateway['id']}", headers=tenant.headers)).json()
    assert stored["last_test"]["ok"] == result["ok"]
    assert stored["last_test"]["message"] == result["message"]
    entries = await audit_entries(client, tenant, object_id=gateway["id"], action="gateway.tested")
    assert entries[0]["outcome"] == ("success" if result["ok"] else "failure")
    return result


async def test_sandbox_always_connects(client: httpx.AsyncClient, tenant: Tenant) -> None:
    result = await run_test(client, tenant, sandbox_payload())
    assert result["ok"] is True
    assert "Sandbox" in result["message"]


async def test_stripe_retrieves_the_balance_from_localstripe(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    result = await run_test(client, tenant, stripe_payload(localstripe_url))
    assert result["ok"] is True
    assert result["message"].startswith("Connected to Stripe")


async def test_stripe_unreachable_is_said_plainly(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    result = await run_test(client, tenant, stripe_payload(closed_port_url()))
    assert result == result | {"ok": False}
    assert "could not be reached" in result["message"] or "connect" in result["message"].lower()


async def test_paypal_obtains_a_token_or_names_bad_credentials(
    client: httpx.AsyncClient, tenant: Tenant, paypal_emulator: PayPalEmulator
) -> None:
    payload = {
        "gateway_type": "paypal",
        "configuration": {
            "client_id": paypal_emulator.client_id,
            "client_secret": paypal_emulator.client_secret,
            "api_base_url": paypal_emulator.base_url,
        },
    }
    ok = await run_test(client, tenant, payload)
    assert ok["ok"] is True
    assert "OAuth token obtained" in ok["message"]
    payload["configuration"]["client_secret"] = "definitely-wrong-secret"
    bad = await run_test(client, tenant, payload)
    assert bad == bad | {"ok": False, "message": "PayPal rejected the client id or secret."}


async def test_square_lists_locations_and_checks_the_location_id(
    client: httpx.AsyncClient, tenant: Tenant, square_emulator: SquareEmulator
) -> None:
    payload = {
        "gateway_type": "square",
        "configuration": {
            "access_token": square_emulator.access_token,
            "application_id": "sandbox-sq0idb-demo-app",
            "location_id": square_emulator.location_id,
            "api_base_url": square_emulator.base_url,
        },
    }
    assert (await run_test(client, tenant, payload))["ok"] is True
    wrong_location = {
        **payload,
        "configuration": {**payload["configuration"], "location_id": "LNOPE123"},
    }
    result = await run_test(client, tenant, wrong_location)
    assert result["ok"] is False
    assert result["message"].startswith("Location id LNOPE123 was not found")
    bad_token = {
        **payload,
        "configuration": {**payload["configuration"], "access_token": "EAAAwrong"},
    }
    assert (await run_test(client, tenant, bad_token))[
        "message"
    ] == "Square rejected the access token."


async def test_custom_gateway_health_and_timeout(
    client: httpx.AsyncClient, tenant: Tenant, custom_gateway_emulator: CustomGatewayEmulator
) -> None:
    payload = {
        "gateway_type": "custom",
        "configuration": {
            "base_url": custom_gateway_emulator.base_url,
            "api_key": custom_gateway_emulator.api_key,
        },
    }
    assert (await run_test(client, tenant, payload))["ok"] is True
    custom_gateway_emulator.knobs.delay_seconds = 5  # the test settings allow 2 s
    slow = await run_test(client, tenant, payload)
    assert slow["ok"] is False
    assert slow["message"] == "The gateway did not answer within 2 s."


async def test_another_company_cannot_test_it(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    response = await client.post(
        f"/api/v1/gateways/{gateway['id']}/test", headers=other_tenant.headers
    )
    assert response.status_code == 404
    assert (await audit_entries(client, tenant, action="gateway.tested")) == []
