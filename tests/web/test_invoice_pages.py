"""The invoice pages: create through the form, inline errors, list and filter, the detail
page with payments and timeline, refunds (once per form, however often it is sent), void,
another company's invoice, and what a viewer may see."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.conftest import Tenant
from tests.payments.helpers import pay
from tests.web.helpers import WebUser, csrf_of
from tests.web.test_account_pages import accept, invite


def as_tenant(user: WebUser) -> Tenant:
    """The page session's tokens work for the JSON API too."""
    access = user.client.cookies["pg_access"]
    return Tenant(user.email, user.password, user.company_name, access, "")


def invoice_form(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "customer.name": "Jane Buyer",
        "customer.email": "Jane@Buyer.example.com",
        "currency": "usd",
        "line_description": ["Design work", "Hosting"],
        "line_quantity": ["2", "1"],
        "line_unit_price": ["12.50", "1,000"],
        "due_date": "2031-01-31",
        "memo": "Thank you!",
        "intent": "create",
    }
    data.update(overrides)
    return data


async def create_invoice(user: WebUser, **overrides: Any) -> str:
    response = await user.post("/invoices", invoice_form(**overrides), page="/invoices/new")
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/invoices/(inv_[A-Za-z0-9]+)\?notice=\w+", response.headers["location"])
    assert match, response.headers["location"]
    return match.group(1)


async def api_invoice(user: WebUser, invoice_id: str) -> dict[str, Any]:
    response = await user.client.get(f"/api/v1/invoices/{invoice_id}", headers=user.bearer)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def sandbox(user: WebUser) -> None:
    response = await user.client.post(
        "/api/v1/gateways",
        json={"gateway_type": "sandbox", "name": "Sandbox", "supported_currencies": ["USD", "JPY"]},
        headers=user.bearer,
    )
    assert response.status_code == 201, response.text


async def test_create_invoice_through_the_form(owner: WebUser) -> None:
    form = await owner.client.get("/invoices/new")
    assert form.status_code == 200
    assert 'name="line_description"' in form.text
    assert 'id="line-template"' in form.text
    assert "<script>" not in form.text
    assert "onclick" not in form.text

    invoice_id = await create_invoice(owner)
    body = await api_invoice(owner, invoice_id)
    assert body["status"] == "open"
    assert body["currency"] == "USD"
    assert body["customer"] == {
        "name": "Jane Buyer",
        "email": "jane@buyer.example.com",
        "country": None,
    }
    assert [(i["quantity"], i["unit_amount"], i["amount"]) for i in body["line_items"]] == [
        (2, 1250, 2500),
        (1, 100_000, 100_000),
    ]
    assert body["amount_total"] == 102_500

    page = await owner.client.get(f"/invoices/{invoice_id}?notice=created")
    assert page.status_code == 200
    html = page.text
    assert "Invoice created." in html
    assert "$1,025.00" in html
    assert "$12.50" in html
    assert "$25.00" in html
    assert 'class="badge badge-inv-open"' in html
    assert body["pay_url"] in html
    assert 'data-copy="#pay-link"' in html
    assert "Void invoice" in html
    assert "Invoice created" in html


async def test_yen_has_no_decimals_and_drafts_finalize(owner: WebUser) -> None:
    invoice_id = await create_invoice(
        owner,
        currency="JPY",
        line_description=["Tea set"],
        line_quantity=["3"],
        line_unit_price=["1200"],
        intent="draft",
    )
    body = await api_invoice(owner, invoice_id)
    assert body["status"] == "draft"
    assert body["line_items"][0]["unit_amount"] == 1200
    assert body["amount_total"] == 3600
    html = (await owner.client.get(f"/invoices/{invoice_id}")).text
    assert "¥3,600" in html
    assert "Finalize invoice" in html

    refused = await owner.post(
        "/invoices",
        invoice_form(
            currency="JPY", line_description=["Tea"], line_quantity=["1"], line_unit_price=["12.5"]
        ),
        page="/invoices/new",
    )
    assert refused.status_code == 422
    assert "JPY has no decimals" in refused.text

    finalized = await owner.post(
        f"/invoices/{invoice_id}/finalize", htmx=True, page=f"/invoices/{invoice_id}"
    )
    assert finalized.status_code == 200
    assert "<html" not in finalized.text
    assert 'id="invoice-detail"' in finalized.text
    assert "badge-inv-open" in finalized.text
    assert (await api_invoice(owner, invoice_id))["status"] == "open"


async def test_field_errors_are_inline_and_nothing_is_created(owner: WebUser) -> None:
    before = (await owner.client.get("/api/v1/invoices", headers=owner.bearer)).json()["data"]
    response = await owner.post(
        "/invoices",
        invoice_form(
            **{"customer.email": "not-an-email", "currency": "XYZ"},
            line_description=["", "Hosting"],
            line_quantity=["1", "0"],
            line_unit_price=["12.5.0", "abc"],
        ),
        page="/invoices/new",
    )
    assert response.status_code == 422
    html = response.text
    assert 'id="f-customer-email-error"' in html
    assert 'id="f-currency-error"' in html
    assert "ISO 4217" in html
    assert 'id="f-line_items-0-unit_amount-error"' in html
    assert "like 12.50" in html
    assert 'id="f-line_items-0-description-error"' in html
    assert 'id="f-line_items-1-quantity-error"' in html
    assert 'id="f-line_items-1-unit_amount-error"' in html
    # What was typed is kept.
    assert 'value="12.5.0"' in html
    assert 'value="Hosting"' in html
    # Too many decimals for a known currency.
    cents = await owner.post(
        "/invoices", invoice_form(line_unit_price=["12.505", "1"]), page="/invoices/new"
    )
    assert cents.status_code == 422
    assert "at most 2 decimals in USD" in cents.text
    after = (await owner.client.get("/api/v1/invoices", headers=owner.bearer)).json()["data"]
    assert len(after) == len(before)


async def test_add_and_remove_lines_without_javascript(owner: WebUser) -> None:
    added = await owner.post("/invoices", invoice_form(intent="add_line"), page="/invoices/new")
    assert added.status_code == 200
    assert added.text.count('name="line_description"') == 4  # 3 rows + the JS template
    removed = await owner.post(
        "/invoices", invoice_form(intent="remove_line:0"), page="/invoices/new"
    )
    assert removed.text.count('name="line_description"') == 2
    assert 'value="Hosting"' in removed.text
    assert 'value="Design work"' not in removed.text


async def test_list_filters_and_paging(owner: WebUser, rival: WebUser) -> None:
    empty = await owner.client.get("/invoices")
    assert "No invoices yet" in empty.text
    assert "Create your first invoice" in empty.text
    first = await create_invoice(owner, **{"customer.email": "a@example.com"})
    second = await create_invoice(owner, **{"customer.email": "b@example.com"}, intent="draft")
    theirs = await create_invoice(rival)

    html = (await owner.client.get("/invoices")).text
    assert first in html
    assert second in html
    assert theirs not in html
    assert "$1,025.00" in html
    assert "badge-inv-draft" in html
    assert html.index(second) < html.index(first)  # newest first
    nav = re.search(r'<nav class="side-nav".*?</nav>', html, re.S)
    assert nav
    assert 'href="/invoices" aria-current="page"' in nav.group(0)

    drafts = (await owner.client.get("/invoices?status=draft")).text
    assert second in drafts
    assert first not in drafts
    by_customer = (await owner.client.get("/invoices?customer=A@example.com")).text
    assert first in by_customer
    assert second not in by_customer
    future = (await owner.client.get("/invoices?since=2999-01-01")).text
    assert "No matching invoices" in future
    bad = await owner.client.get("/invoices?since=yesterday&status=bogus")
    assert bad.status_code == 200
    assert "YYYY-MM-DD" in bad.text

    for _ in range(25):
        await create_invoice(
            owner, line_description=["x"], line_quantity=["1"], line_unit_price=["1"]
        )
    page1 = (await owner.client.get("/invoices")).text
    older = re.search(r'href="(/invoices\?cursor=[^"]+)" rel="next"', page1)
    assert older, "a second page"
    page2 = (await owner.client.get(older.group(1).replace("&amp;", "&"))).text
    assert first in page2
    assert first not in page1


async def test_detail_payments_refund_once_and_timeline(
    owner: WebUser, client: httpx.AsyncClient
) -> None:
    await sandbox(owner)
    invoice_id = await create_invoice(owner)
    payment = await pay(client, as_tenant(owner), invoice_id)
    assert payment["status"] == "succeeded"
    url = f"/invoices/{invoice_id}"
    html = (await owner.client.get(url)).text
    assert f'id="payment-{payment["id"]}"' in html
    assert "badge-pay-succeeded" in html
    assert "Sandbox" in html
    assert "Payment of $1,025.00" in html  # timeline event
    assert "badge-inv-paid" in html
    assert "Void invoice" not in html  # paid: cannot be voided

    nonce = re.search(r'name="nonce" value="([^"]+)"', html)
    assert nonce
    refund_url = f"{url}/payments/{payment['id']}/refund"
    data = {
        "amount": "25.00",
        "reason": "Returned goods",
        "nonce": nonce.group(1),
        "csrf_token": csrf_of(html),
    }
    first = await owner.client.post(refund_url, data=data)
    assert first.status_code == 303
    assert first.headers["location"] == f"{url}?notice=refunded"
    again = await owner.client.post(refund_url, data=data)  # the same form sent twice
    assert again.status_code == 303
    assert again.headers["location"] == f"{url}?notice=refund_replayed"
    refunds = (
        await owner.client.get(f"/api/v1/payments/{payment['id']}", headers=owner.bearer)
    ).json()["refunds"]
    assert [(r["amount"], r["status"]) for r in refunds] == [(2500, "succeeded")]
    assert (await api_invoice(owner, invoice_id))["amount_refunded"] == 2500

    page = (await owner.client.get(f"{url}?notice=refund_replayed")).text
    assert "nothing was refunded twice" in page
    assert "Refund of $25.00: succeeded" in page
    assert "Returned goods" in page
    assert "$1,000.00" in page  # the refund box offers what is left

    # Too much: an inline error, through htmx, and nothing refunded.
    token = csrf_of(page)
    fresh = re.search(r'name="nonce" value="([^"]+)"', page)
    assert fresh
    too_much = await owner.client.post(
        refund_url,
        data={"amount": "5000", "nonce": fresh.group(1), "csrf_token": token},
        headers={"HX-Request": "true", "X-CSRF-Token": token},
    )
    assert too_much.status_code == 422
    assert "<html" not in too_much.text
    assert f'id="refund-amount-{payment["id"]}-error"' in too_much.text
    bad = await owner.client.post(
        refund_url, data={"amount": "1.234", "nonce": fresh.group(1), "csrf_token": token}
    )
    assert bad.status_code == 422
    assert "at most 2 decimals" in bad.text
    assert (await api_invoice(owner, invoice_id))["amount_refunded"] == 2500


async def test_void_and_another_companys_invoice(owner: WebUser, rival: WebUser) -> None:
    invoice_id = await create_invoice(owner)
    url = f"/invoices/{invoice_id}"
    voided = await owner.post(f"{url}/void", page=url)
    assert voided.status_code == 303
    html = (await owner.client.get(voided.headers["location"])).text
    assert "badge-inv-void" in html
    assert "Invoice voided" in html
    assert 'id="pay-link"' not in html
    assert "Void invoice" not in html
    assert (await api_invoice(owner, invoice_id))["status"] == "void"

    other = await create_invoice(owner)
    for path in (f"/invoices/{other}",):
        response = await rival.client.get(path)
        assert response.status_code == 404
        assert "Page not found" in response.text
        assert "<html" in response.text
    refused = await rival.post(f"/invoices/{other}/void", page="/invoices")
    assert refused.status_code == 404
    assert (await api_invoice(owner, other))["status"] == "open"


async def test_viewer_sees_no_write_actions(
    owner: WebUser, app: Any, client: httpx.AsyncClient
) -> None:
    await sandbox(owner)
    invoice_id = await create_invoice(owner)
    draft_id = await create_invoice(owner, intent="draft")
    payment = await pay(client, as_tenant(owner), invoice_id, amount=2500, expect=422)
    assert payment  # partial payments are off: refused
    payment = await pay(client, as_tenant(owner), invoice_id)
    url = await invite(owner, "invoice-viewer@example.com", "viewer")
    viewer = await accept(app, url)
    try:
        listing = (await viewer.client.get("/invoices")).text
        assert invoice_id in listing
        assert "New invoice" not in listing
        for target in (invoice_id, draft_id):
            html = (await viewer.client.get(f"/invoices/{target}")).text
            for action in (
                "Finalize invoice",
                "Void invoice",
                'name="nonce"',
                "Check status",
                "/refund",
            ):
                assert action not in html
            assert 'id="pay-link"' in html  # reading is fine
        assert (await viewer.client.get("/invoices/new")).status_code == 403
        refused = await viewer.post(
            f"/invoices/{invoice_id}/payments/{payment['id']}/refund",
            {"nonce": "n" * 24},
            page="/invoices",
        )
        assert refused.status_code == 403
        assert (
            await viewer.post(f"/invoices/{draft_id}/finalize", page="/invoices")
        ).status_code == 403
        assert (await viewer.post("/invoices", invoice_form(), page="/invoices")).status_code == 403
    finally:
        await viewer.client.aclose()
    # Each refusal on a page is audited like one from the API: the owner sees who tried what.
    denied = (
        await owner.client.get(
            "/api/v1/audit-log",
            params={"action": "authorization.denied"},
            headers={"authorization": f"Bearer {as_tenant(owner).access_token}"},
        )
    ).json()["data"]
    tried = {(entry["actor_label"], entry["object_id"], entry["detail"]) for entry in denied}
    assert ("invoice-viewer@example.com", "invoices:write", "GET /invoices/new") in tried
    assert ("invoice-viewer@example.com", "invoices:write", "POST /invoices") in tried
    assert {entry["outcome"] for entry in denied} == {"denied"}


async def test_the_number_placeholder_is_the_number_an_empty_field_gets(owner: WebUser) -> None:
    assert 'placeholder="Automatic (INV-000001)"' in (await owner.client.get("/invoices/new")).text
    # A number typed by hand takes the next automatic one: the placeholder skips it.
    await create_invoice(owner, number="INV-000001")
    assert 'placeholder="Automatic (INV-000002)"' in (await owner.client.get("/invoices/new")).text
    await create_invoice(owner, number="INV-000002")
    await create_invoice(owner, number="INV-000004")
    page = (await owner.client.get("/invoices/new")).text
    assert 'placeholder="Automatic (INV-000005)"' in page  # 4 invoices: 5 is free
    automatic = await create_invoice(owner)
    assert (await api_invoice(owner, automatic))["number"] == "INV-000005"
    page = (await owner.client.get("/invoices/new")).text
    assert 'placeholder="Automatic (INV-000006)"' in page
