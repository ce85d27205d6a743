"""The failed transaction log: declines and technical failures of payments and refunds,
filterable, cursor paged, linked to payment and invoice, per company."""

from __future__ import annotations

import secrets
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.gateways.helpers import create_gateway
from tests.monitoring.helpers import custom_payload
from tests.payments.helpers import create_invoice, pay, sandbox_gateway

DECLINED = "4000000000000002"
NO_FUNDS = "4000000000009995"


async def failures(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/payment-failures", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_every_failed_payment_and_refund_is_in_the_log(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    sandbox = await sandbox_gateway(client, tenant)
    custom = await create_gateway(client, tenant, custom_payload(custom_gateway_emulator))
    declined_invoice = await create_invoice(client, tenant, amount=4_200)
    declined = await pay(
        client, tenant, declined_invoice["id"], gateway_id=sandbox["id"], payment_method=DECLINED
    )
    no_funds_invoice = await create_invoice(client, tenant)
    await pay(
        client, tenant, no_funds_invoice["id"], gateway_id=sandbox["id"], payment_method=NO_FUNDS
    )
    await pay(client, tenant, no_funds_invoice["id"], gateway_id=sandbox["id"])  # succeeds
    custom_gateway_emulator.knobs.fail_status = 503
    unknown_invoice = await create_invoice(client, tenant)
    unknown = await pay(
        client, tenant, unknown_invoice["id"], gateway_id=custom["id"], payment_method="tok_visa"
    )
    custom_gateway_emulator.knobs.reset()
    paid_invoice = await create_invoice(client, tenant, amount=9_900)
    paid = await pay(
        client, tenant, paid_invoice["id"], gateway_id=custom["id"], payment_method="tok_visa"
    )
    assert paid["status"] == "succeeded"
    custom_gateway_emulator.knobs.fail_status = 400
    refund = await client.post(
        f"/api/v1/payments/{paid['id']}/refunds",
        json={"amount": 1_000},
        headers={**tenant.headers, "Idempotency-Key": secrets.token_hex(8)},
    )
    custom_gateway_emulator.knobs.reset()
    assert refund.status_code in (200, 201), refund.text
    # The other company's decline is its own.
    theirs = await sandbox_gateway(client, other_tenant)
    their_invoice = await create_invoice(client, other_tenant)
    await pay(
        client, other_tenant, their_invoice["id"], gateway_id=theirs["id"], payment_method=DECLINED
    )

    log = await failures(client, tenant)
    rows = log["data"]
    assert [(r["type"], r["failure_kind"], r["code"]) for r in rows] == [
        ("refund", "technical", "rejected"),
        ("payment", "technical", "outcome_unknown"),
        ("payment", "decline", "insufficient_funds"),
        ("payment", "decline", "card_declined"),
    ]
    assert log["has_more"] is False
    card = rows[3]
    assert card["payment_id"] == declined["id"]
    assert card["invoice_id"] == declined_invoice["id"]
    assert (card["amount"], card["currency"]) == (4_200, "USD")
    assert card["gateway_id"] == sandbox["id"]
    assert card["gateway_name"] == "Sandbox"
    assert card["message"]
    assert rows[1]["payment_id"] == unknown["id"]
    assert rows[1]["gateway_name"] == "Custom"
    assert rows[0]["refund_id"] == rows[0]["id"]
    assert rows[0]["amount"] == 1_000
    assert rows[0]["invoice_id"] == paid_invoice["id"]

    # Filters.
    def codes(body: dict[str, Any]) -> list[str]:
        return [r["code"] for r in body["data"]]

    declines = await failures(client, tenant, failure_kind="decline")
    assert codes(declines) == ["insufficient_funds", "card_declined"]
    assert codes(await failures(client, tenant, type="refund")) == ["rejected"]
    assert codes(await failures(client, tenant, gateway_id=custom["id"])) == [
        "rejected",
        "outcome_unknown",
    ]
    assert codes(await failures(client, tenant, code="card_declined")) == ["card_declined"]
    assert codes(await failures(client, tenant, invoice_id=no_funds_invoice["id"])) == [
        "insufficient_funds"
    ]
    assert codes(await failures(client, tenant, payment_id=paid["id"])) == ["rejected"]
    future = await failures(client, tenant, since="2999-01-01T00:00:00Z")
    assert future["data"] == []

    # Cursor paging, one at a time, walks the same rows.
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 1}
        if cursor:
            params["cursor"] = cursor
        page = await failures(client, tenant, **params)
        seen += [r["id"] for r in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [r["id"] for r in rows]

    # Another company sees only its own; another company's filter value finds nothing.
    assert codes(await failures(client, other_tenant)) == ["card_declined"]
    assert (await failures(client, other_tenant, gateway_id=sandbox["id"]))["data"] == []


async def test_bad_filters_are_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for params in (
        {"cursor": "not-a-cursor"},
        {"cursor": "123.gw_" + "Z" * 25},
        {"failure_kind": "fraud"},
        {"type": "chargeback"},
        {"since": "yesterday"},
        {"limit": 0},
        {"limit": 201},
        {"code": "x" * 41},
    ):
        response = await client.get(
            "/api/v1/payment-failures", params=params, headers=tenant.headers
        )
        assert response.status_code == 422, (params, response.text)
        assert response.headers["content-type"] == "application/problem+json"
