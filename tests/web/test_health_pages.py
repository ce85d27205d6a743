"""The Gateway health pages through the page routes: dashboard, detail, failure log, alerts."""

from __future__ import annotations

import re

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import checks
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from tests.monitoring.helpers import schedule_only
from tests.web.helpers import WebUser, sandbox_form


async def sandbox(owner: WebUser, name: str) -> str:
    response = await owner.post("/gateways", sandbox_form(name=name))
    assert response.status_code in (200, 303), response.text
    gateways = (await owner.client.get("/api/v1/gateways", headers=owner.bearer)).json()
    return str(next(g["id"] for g in gateways if g["name"] == name))


async def test_dashboard_detail_and_settings(
    owner: WebUser, rival: WebUser, database: Database, settings: Settings
) -> None:
    gateway_id = await sandbox(owner, "<b>Sandbox</b>")
    await schedule_only(database, settings, [gateway_id], utcnow())
    await checks.run_round(database, Keyring.parse(settings.master_keys_text()), settings)

    page = await owner.client.get("/health")
    assert page.status_code == 200
    assert "&lt;b&gt;Sandbox&lt;/b&gt;" in page.text
    assert "<b>Sandbox</b>" not in page.text
    assert 'hx-get="/health/tiles"' in page.text
    assert len(re.findall(r'class="beat beat-', page.text)) == 90
    assert re.search(r'href="/health" aria-current="page">.*?<span>Health</span>', page.text)

    tiles = await owner.client.get("/health/tiles", headers={"HX-Request": "true"})
    assert tiles.status_code == 200
    assert tiles.text.lstrip().startswith('<div id="health-tiles"')

    detail = await owner.client.get(f"/health/gateways/{gateway_id}")
    assert detail.status_code == 200
    assert 'id="health-series"' in detail.text
    assert "/static/vendor/chart.umd.min.js" in detail.text
    panel = await owner.client.get(
        f"/health/gateways/{gateway_id}/panel", headers={"HX-Request": "true"}
    )
    assert panel.text.lstrip().startswith('<div id="gateway-health-panel"')

    # Check settings: a bad value is shown next to its field, a good one saved and audited.
    bad = await owner.post(
        f"/health/gateways/{gateway_id}/monitoring",
        {"interval_minutes": "90", "failure_threshold": "2"},
        htmx=True,
    )
    assert bad.status_code == 422
    assert 'id="f-interval_minutes-error"' in bad.text
    good = await owner.post(
        f"/health/gateways/{gateway_id}/monitoring",
        {"interval_minutes": "2", "failure_threshold": "3"},
        htmx=True,
    )
    assert good.status_code == 200
    health = (
        await owner.client.get(f"/api/v1/gateways/{gateway_id}/health", headers=owner.bearer)
    ).json()
    assert health["monitor"] == {"interval_minutes": 2, "failure_threshold": 3}

    # The other company: not found, and its dashboard does not show the gateway.
    assert (await rival.client.get(f"/health/gateways/{gateway_id}")).status_code == 404
    assert "Sandbox" not in (await rival.client.get("/health")).text
    refused = await rival.post(
        f"/health/gateways/{gateway_id}/monitoring",
        {"interval_minutes": "1", "failure_threshold": "1"},
        page="/health",
    )
    assert refused.status_code == 404


async def test_alert_recipients_page(owner: WebUser, rival: WebUser) -> None:
    page = await owner.client.get("/health/alerts")
    assert "owners receive every alert" in page.text
    bad = await owner.post(
        "/health/alerts", {"email": "nope", "kinds": ["gateway_down"]}, page="/health/alerts"
    )
    assert bad.status_code == 422
    assert 'id="f-email-error"' in bad.text
    added = await owner.post(
        "/health/alerts",
        {"email": "pager@acme.example", "kinds": ["gateway_down", "gateway_up"]},
        page="/health/alerts",
    )
    assert added.status_code == 303
    listed = (await owner.client.get("/api/v1/alert-recipients", headers=owner.bearer)).json()
    assert [(r["email"], r["kinds"]) for r in listed] == [
        ("pager@acme.example", ["gateway_down", "gateway_up"])
    ]
    recipient_id = listed[0]["id"]
    # The other company cannot change or remove it.
    for path in (f"/health/alerts/{recipient_id}", f"/health/alerts/{recipient_id}/delete"):
        response = await rival.post(path, {"kinds": ["tls_expiry"]}, page="/health/alerts")
        assert response.status_code == 404
    saved = await owner.post(
        f"/health/alerts/{recipient_id}", {"kinds": ["tls_expiry"]}, page="/health/alerts"
    )
    assert saved.status_code == 303
    listed = (await owner.client.get("/api/v1/alert-recipients", headers=owner.bearer)).json()
    assert listed[0]["kinds"] == ["tls_expiry"]
    removed = await owner.post(f"/health/alerts/{recipient_id}/delete", page="/health/alerts")
    assert removed.status_code == 303
    assert (await owner.client.get("/api/v1/alert-recipients", headers=owner.bearer)).json() == []


async def test_failure_log_page(owner: WebUser) -> None:
    gateway_id = await sandbox(owner, "Sandbox")
    invoice = await owner.client.post(
        "/api/v1/invoices",
        json={
            "customer": {"name": "Jane", "email": "jane@buyer.example.com"},
            "currency": "USD",
            "line_items": [{"description": "Work", "quantity": 1, "unit_amount": 5_000}],
        },
        headers=owner.bearer,
    )
    invoice_id = invoice.json()["id"]
    paid = await owner.client.post(
        f"/api/v1/invoices/{invoice_id}/payments",
        json={"gateway_id": gateway_id, "payment_method": "4000000000000002"},
        headers={**owner.bearer, "Idempotency-Key": "fail-page-1"},
    )
    payment_id = paid.json()["id"]
    page = await owner.client.get("/health/failures")
    assert page.status_code == 200
    assert "<code>card_declined</code>" in page.text
    assert f'href="/invoices/{invoice_id}#payment-{payment_id}"' in page.text
    assert "$50.00" in page.text
    filtered = await owner.client.get("/health/failures", params={"failure_kind": "technical"})
    assert "<code>card_declined</code>" not in filtered.text
    bad_day = await owner.client.get("/health/failures", params={"since": "31/12/2026"})
    assert "Enter a date as YYYY-MM-DD." in bad_day.text
