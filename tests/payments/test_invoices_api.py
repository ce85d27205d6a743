"""Invoices through the API: totals in minor units, statuses, paging, tenancy."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant
from tests.payments.helpers import create_invoice, pay, sandbox_gateway


async def test_create_computes_totals_and_a_pay_link(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    invoice = await create_invoice(
        client,
        tenant,
        line_items=[
            {"description": "Design", "quantity": 3, "unit_amount": 15_000},
            {"description": "Hosting", "quantity": 1, "unit_amount": 999},
        ],
        due_date="2026-12-31",
        memo="Thank you!",
    )
    assert invoice["id"].startswith("inv_")
    assert invoice["number"].startswith("INV-")
    assert invoice["status"] == "open"
    assert (invoice["amount_total"], invoice["amount_due"], invoice["amount_paid"]) == (
        45_999,
        45_999,
        0,
    )
    assert [line["amount"] for line in invoice["line_items"]] == [45_000, 999]
    assert invoice["pay_url"].startswith("http")
    token = invoice["pay_url"].rsplit("/", 1)[1]
    assert len(token) >= 40


async def test_zero_decimal_currencies_and_validation(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    yen = await create_invoice(client, tenant, amount=5000, currency="jpy")
    assert (yen["currency"], yen["amount_total"]) == ("JPY", 5000)
    for bad, field in [
        ({"currency": "XYZ"}, "currency"),
        ({"line_items": []}, "line_items"),
        (
            {"line_items": [{"description": "x", "quantity": 0, "unit_amount": 1}]},
            "line_items.0.quantity",
        ),
        (
            {"line_items": [{"description": "x", "quantity": 1, "unit_amount": 1.5}]},
            "line_items.0.unit_amount",
        ),
        ({"customer": {"name": "x", "email": "not-an-email"}}, "customer.email"),
    ]:
        payload = {
            "customer": {"name": "Jane", "email": "jane@buyer.example.com"},
            "currency": "USD",
            "line_items": [{"description": "x", "quantity": 1, "unit_amount": 100}],
            **bad,
        }
        response = await client.post("/api/v1/invoices", json=payload, headers=tenant.headers)
        assert response.status_code == 422, bad
        assert field in [e["field"] for e in response.json()["errors"]], response.json()


async def test_numbers_are_unique_per_company(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await create_invoice(client, tenant, number="A-1")
    await create_invoice(client, other_tenant, number="A-1")  # another company may reuse it
    response = await client.post(
        "/api/v1/invoices",
        json={
            "number": "A-1",
            "customer": {"name": "J", "email": "j@buyer.example.com"},
            "currency": "USD",
            "line_items": [{"description": "x", "quantity": 1, "unit_amount": 100}],
        },
        headers=tenant.headers,
    )
    assert response.status_code == 409


async def test_list_filters_void_and_tenancy(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = await create_invoice(client, tenant)
    second = await create_invoice(
        client, tenant, customer={"name": "Bob", "email": "bob@buyer.example.com"}
    )
    await create_invoice(client, other_tenant)
    listed = (await client.get("/api/v1/invoices", headers=tenant.headers)).json()
    assert [i["id"] for i in listed["data"]] == [second["id"], first["id"]]
    by_customer = (
        await client.get(
            "/api/v1/invoices", params={"customer": "BOB@buyer.example.com"}, headers=tenant.headers
        )
    ).json()
    assert [i["id"] for i in by_customer["data"]] == [second["id"]]
    voided = await client.post(f"/api/v1/invoices/{first['id']}/void", headers=tenant.headers)
    assert voided.json()["status"] == "void"
    open_ones = (
        await client.get("/api/v1/invoices", params={"status": "open"}, headers=tenant.headers)
    ).json()
    assert [i["id"] for i in open_ones["data"]] == [second["id"]]
    for path in (f"/api/v1/invoices/{second['id']}", f"/api/v1/invoices/{second['id']}/void"):
        method = "GET" if path.endswith(second["id"]) else "POST"
        assert (await client.request(method, path, headers=other_tenant.headers)).status_code == 404


async def test_drafts_are_not_payable_until_finalized(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    draft = await create_invoice(client, tenant, draft=True)
    assert draft["status"] == "draft"
    refused = await pay(client, tenant, draft["id"], expect=409)
    assert "draft" in refused["detail"]
    finalized = await client.post(
        f"/api/v1/invoices/{draft['id']}/finalize", headers=tenant.headers
    )
    assert finalized.json()["status"] == "open"
    again = await client.post(f"/api/v1/invoices/{draft['id']}/finalize", headers=tenant.headers)
    assert again.status_code == 409
