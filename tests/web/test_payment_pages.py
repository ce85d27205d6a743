"""The payments page, its CSV export and GET /api/v1/payments select the same payments;
neither company sees the other's; the review decision moves the payment and is audited."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import httpx
import pytest

from paygate.web import payment_pages
from tests.payments.helpers import create_invoice, pay, sandbox_gateway
from tests.web.helpers import WebUser
from tests.web.test_account_pages import accept, invite
from tests.web.test_invoice_pages import as_tenant

REVIEW_CARD = "4000000000000036"  # the sandbox answers one minor unit less: review
DECLINE_CARD = "4000000000009995"


async def seed(client: httpx.AsyncClient, user: WebUser, email_domain: str) -> dict[str, Any]:
    """Succeeded USD payments of 10, 20 and 30 dollars, a declined one, a JPY one, one in
    review: the ids by role."""
    tenant = as_tenant(user)
    gateway = await sandbox_gateway(client, tenant)
    ids: dict[str, Any] = {"succeeded": [], "gateway": gateway["id"]}
    for index, amount in enumerate((1000, 2000, 3000)):
        invoice = await create_invoice(
            client,
            tenant,
            amount=amount,
            customer={"name": "Buyer", "email": f"buyer{index}@{email_domain}"},
        )
        ids["succeeded"].append((await pay(client, tenant, invoice["id"]))["id"])
        ids.setdefault("numbers", []).append(invoice["number"])
    declined = await create_invoice(client, tenant, amount=4000)
    ids["declined"] = (await pay(client, tenant, declined["id"], payment_method=DECLINE_CARD))["id"]
    yen = await create_invoice(client, tenant, amount=5000, currency="JPY")
    ids["yen"] = (await pay(client, tenant, yen["id"]))["id"]
    review = await create_invoice(client, tenant, amount=7000)
    ids["review"] = (await pay(client, tenant, review["id"], payment_method=REVIEW_CARD))["id"]
    return ids


async def api_ids(user: WebUser, **params: Any) -> list[str]:
    """Every id the API lists for these filters, walking its cursor two at a time."""
    found: list[str] = []
    cursor = None
    while True:
        query = {**params, "limit": 2, **({"cursor": cursor} if cursor else {})}
        response = await user.client.get("/api/v1/payments", params=query, headers=user.bearer)
        assert response.status_code == 200, response.text
        body = response.json()
        found += [p["id"] for p in body["data"]]
        if not body["has_more"]:
            return found
        cursor = body["next_cursor"]


async def page_ids(user: WebUser, **params: Any) -> list[str]:
    """Every id the page lists for these filters, following its Older links."""
    found: list[str] = []
    url: str | None = "/payments"
    query: dict[str, Any] | None = params
    while url:
        response = await user.client.get(url, params=query)
        assert response.status_code == 200, response.text
        table = re.search(r'<table class="table pay-table[^"]*">.*?</table>', response.text, re.S)
        found += re.findall(r'<tr id="payment-(pay_[A-Za-z0-9]+)"', table.group(0)) if table else []
        older = re.search(r'href="([^"]+)" rel="next"', response.text)
        url, query = (older.group(1).replace("&amp;", "&"), None) if older else (None, None)
    return found


async def csv_rows(user: WebUser, **params: Any) -> list[dict[str, str]]:
    response = await user.client.get("/payments/export.csv", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    return list(csv.DictReader(io.StringIO(response.text)))


@pytest.fixture
async def seeded(
    owner: WebUser, rival: WebUser, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[dict[str, Any], dict[str, Any]]:
    monkeypatch.setattr(payment_pages, "PAGE_SIZE", 2)  # paging with a handful of payments
    return await seed(client, owner, "owner.example.com"), await seed(
        client, rival, "rival.example.com"
    )


async def test_filters_paging_and_csv_agree_with_the_api(
    owner: WebUser, rival: WebUser, seeded: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, theirs = seeded
    everything = [*mine["succeeded"], mine["declined"], mine["yen"], mine["review"]]
    # (page filters, the same filters for the API)
    cases: list[tuple[dict[str, str], dict[str, str]]] = [
        ({}, {}),
        ({"status": "succeeded"}, {"status": "succeeded"}),
        ({"status": "failed"}, {"status": "failed"}),
        ({"currency": "JPY"}, {"currency": "JPY"}),
        ({"method": "card"}, {"method": "card"}),
        ({"gateway": mine["gateway"]}, {"gateway_id": mine["gateway"]}),
        (
            {"currency": "USD", "amount_min": "15", "amount_max": "30.00"},
            {"currency": "USD", "amount_min": "1500", "amount_max": "3000"},
        ),
        ({"q": "buyer1@owner"}, {"q": "buyer1@owner"}),
        ({"q": mine["numbers"][2].lower()}, {"q": mine["numbers"][2]}),
        ({"q": mine["review"]}, {"q": mine["review"]}),
        ({"since": "2000-01-01", "until": "2999-12-31"}, {"since": "2000-01-01T00:00:00Z"}),
        ({"until": "2000-01-01"}, {"until": "2000-01-02T00:00:00Z"}),
    ]
    for page_filters, api_filters in cases:
        from_api = await api_ids(owner, **api_filters)
        assert await page_ids(owner, **page_filters) == from_api, page_filters
        assert [r["payment_id"] for r in await csv_rows(owner, **page_filters)] == from_api
        assert set(from_api) <= set(everything)

    assert set(await api_ids(owner)) == set(everything)
    assert set(await api_ids(owner, status="succeeded")) == {*mine["succeeded"], mine["yen"]}
    assert await api_ids(owner, q="buyer1@owner") == [mine["succeeded"][1]]
    assert await api_ids(owner, currency="USD", amount_min=1500, amount_max=3000) == [
        mine["succeeded"][2],
        mine["succeeded"][1],
    ]
    # Neither company sees the other's payments, by any filter.
    assert not set(await api_ids(rival)) & set(everything)
    assert await api_ids(rival, q=mine["review"]) == []
    assert await page_ids(rival, q=mine["review"]) == []
    assert not {r["payment_id"] for r in await csv_rows(rival)} & set(everything)
    assert not set(await page_ids(owner)) & {*theirs["succeeded"], theirs["review"]}

    row = next(r for r in await csv_rows(owner) if r["payment_id"] == mine["yen"])
    assert (row["amount"], row["currency"], row["amount_minor_units"]) == ("5000", "JPY", "5000")


async def test_bad_filters_are_shown_and_select_nothing_wrong(
    owner: WebUser, seeded: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    page = await owner.client.get("/payments", params={"status": "bogus", "amount_min": "10"})
    assert page.status_code == 200
    assert "Choose a status from the list." in page.text
    assert "Choose a currency to filter by amount." in page.text
    bad_amount = await owner.client.get(
        "/payments", params={"currency": "JPY", "amount_min": "1.5"}
    )
    assert "must be a whole number" in bad_amount.text
    # The export refuses half-applied filters: back to the page, which shows why.
    export = await owner.client.get("/payments/export.csv", params={"since": "yesterday"})
    assert export.status_code == 303
    assert export.headers["location"].startswith("/payments?")
    api = await owner.client.get(
        "/api/v1/payments", params={"currency": "usd"}, headers=owner.bearer
    )
    assert api.status_code == 422
    assert api.headers["content-type"].startswith("application/problem+json")
    negative = await owner.client.get(
        "/api/v1/payments", params={"amount_min": -1}, headers=owner.bearer
    )
    assert negative.status_code == 422


async def test_the_review_decision_moves_the_payment_and_is_audited(
    owner: WebUser, rival: WebUser, app: Any, seeded: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, theirs = seeded
    review_id = mine["review"]
    page = (await owner.client.get("/payments")).text
    assert f'id="review-{review_id}"' in page
    assert theirs["review"] not in page

    # Without a reason: the form again with its error; nothing moves.
    refused = await owner.post(
        f"/payments/{review_id}/review", {"outcome": "succeeded", "note": " "}, page="/payments"
    )
    assert refused.status_code == 422
    assert f'id="note-{review_id}-error"' in refused.text
    assert await status_of(owner, review_id) == "requires_review"

    # Another company's payment is not found, and stays in review.
    foreign = await owner.post(
        f"/payments/{theirs['review']}/review",
        {"outcome": "failed", "note": "not mine"},
        page="/payments",
    )
    assert foreign.status_code == 404
    assert await status_of(rival, theirs["review"]) == "requires_review"

    # A viewer may look but not decide.
    viewer = await accept(app, await invite(owner, "pay-viewer@example.com", "viewer"))
    try:
        assert f'id="review-{review_id}"' in (await viewer.client.get("/payments")).text
        assert "Record decision" not in (await viewer.client.get("/payments")).text
        denied = await viewer.post(
            f"/payments/{review_id}/review",
            {"outcome": "succeeded", "note": "x"},
            page="/payments",
        )
        assert denied.status_code == 403
    finally:
        await viewer.client.aclose()

    approved = await owner.post(
        f"/payments/{review_id}/review",
        {"outcome": "succeeded", "note": "Dashboard shows 60.00 USD collected"},
        page="/payments",
    )
    assert approved.status_code == 303
    assert approved.headers["location"] == "/payments"
    assert await status_of(owner, review_id) == "succeeded"
    after = (await owner.client.get("/payments")).text
    assert "Payment approved" in after
    assert f'id="review-{review_id}"' not in after

    audit = await owner.client.get(
        "/api/v1/audit-log", params={"object_id": review_id}, headers=owner.bearer
    )
    entry = next(e for e in audit.json()["data"] if e["action"] == "payment.reviewed")
    assert entry["detail"] == "Dashboard shows 60.00 USD collected"
    assert entry["changes"]["status"] == {"before": "requires_review", "after": "succeeded"}

    # Deciding it again is refused, and says why.
    again = await owner.post(
        f"/payments/{review_id}/review", {"outcome": "failed", "note": "oops"}, page="/payments"
    )
    assert again.status_code == 409
    assert "Only a payment in review can be decided." in again.text
    assert await status_of(owner, review_id) == "succeeded"


async def status_of(user: WebUser, payment_id: str) -> str:
    response = await user.client.get(f"/api/v1/payments/{payment_id}", headers=user.bearer)
    assert response.status_code == 200, response.text
    status: str = response.json()["status"]
    return status


def test_csv_cells_never_start_a_formula() -> None:
    for risky in ("=1+1", "+1", "-1", "@SUM(A1)", "\tx"):
        assert payment_pages._cell(risky).startswith("'")
    assert payment_pages._cell("INV-1") == "INV-1"
    assert payment_pages._cell(None) == ""


async def test_the_overview_shows_collected_amounts_and_what_needs_attention(
    owner: WebUser, rival: WebUser, seeded: tuple[dict[str, Any], dict[str, Any]]
) -> None:
    mine, _ = seeded
    html = (await owner.client.get("/overview")).text
    collected = re.search(r'<table class="table collected-table">.*?</table>', html, re.S)
    assert collected
    usd = re.search(r">USD</th>(.*?)</tr>", collected.group(0), re.S)
    assert usd
    assert usd.group(1).count("$60.00") == 2  # 10 + 20 + 30 dollars, today and in 30 days
    assert "¥5,000" in collected.group(0)
    assert "$40.00" not in collected.group(0)  # declined: not collected
    assert "$70.00" not in collected.group(0)  # in review: not collected yet
    assert f"#payment-{mine['review']}" in html  # needs attention
    assert "waiting for your decision" in html
    # The rival's overview holds only its own.
    # (Without the <wbr> break hints, which would hide an email from a plain search.)
    rival_html = (await rival.client.get("/overview")).text.replace("<wbr>", "")
    assert mine["review"] not in rival_html
    assert "owner.example.com" not in rival_html
