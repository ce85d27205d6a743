"""The Gateway health dashboard in headless chromium: an up, a degraded and a down gateway,
at 1280 and 390 px, without sideways scrolling, console or CSP errors, or serious axe
findings; the gateway page draws its charts; a poll brings a recovery onto the page."""

from __future__ import annotations

import re
import secrets
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Page, expect

from paygate.settings import Settings
from tests.conftest import STRONG_PASSWORD
from tests.e2e.axe import SERIOUS, axe_violations, with_axe
from tests.e2e.workers import check_rounds
from tests.fakes.custom_gateway import CustomGatewayEmulator

pytestmark = pytest.mark.browser

WIDTHS = (1280, 390)


def audit_page(page: Page, width: int, name: str, artifacts: Path) -> None:
    """No sideways scroll, no serious accessibility finding; a screenshot to look at."""
    page.set_viewport_size({"width": width, "height": 900})
    page.wait_for_timeout(150)
    scroll = page.evaluate("() => document.documentElement.scrollWidth")
    if scroll > width:
        page.screenshot(path=str(artifacts / f"health-{name}-{width}-overflow.png"), full_page=True)
        wide = page.evaluate(
            """(w) => [...document.querySelectorAll('body *')]
                .filter(e => e.getBoundingClientRect().right > w + 1)
                .slice(0, 8).map(e => e.tagName + '.' + e.className)""",
            width,
        )
        raise AssertionError(f"{name} scrolls sideways at {width}px ({scroll}): {wide}")
    found = axe_violations(page, impacts=SERIOUS, tags=None)
    assert found == [], f"{name} at {width}px: {found}"
    page.screenshot(path=str(artifacts / f"health-{name}-{width}.png"), full_page=True)


def test_health_dashboard(
    browser: Any,
    live_server: str,
    artifacts: Path,
    settings: Settings,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    emulator = custom_gateway_emulator
    context = with_axe(browser.new_context(viewport={"width": 1280, "height": 900}))
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda msg: (
            problems.append(f"console {msg.type}: {msg.text}") if msg.type == "error" else None
        ),
    )

    page.goto(f"{live_server}/signup")
    page.get_by_label("Company name").fill("Hooli Health")
    page.get_by_label("Work email").fill(f"health-{secrets.token_hex(4)}@example.com")
    page.get_by_label("Password").fill(STRONG_PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(re.compile(r"/gateways$"))

    # Three gateways, through the API with this browser's session: one answers, two are
    # refused by the emulator (a wrong key); the degraded one needs 3 failures to be down.
    token = next(c["value"] for c in context.cookies() if c["name"] == "pg_access")
    api = httpx.Client(base_url=live_server, headers={"Authorization": f"Bearer {token}"})
    ids: dict[str, str] = {}
    for name, key, threshold in (
        ("Primary", emulator.api_key, 2),
        ("Backup", "cgw_wrong_key_0000000000", 3),
        ("Legacy", "cgw_wrong_key_0000000000", 1),
    ):
        created = api.post(
            "/api/v1/gateways",
            json={
                "name": name,
                "gateway_type": "custom",
                "configuration": {"base_url": emulator.base_url, "api_key": key},
            },
        )
        assert created.status_code == 201, created.text
        ids[name] = created.json()["id"]
        api.patch(
            f"/api/v1/gateways/{ids[name]}/monitoring",
            json={"interval_minutes": 1, "failure_threshold": threshold},
        )
    check_rounds(settings, list(ids.values()), 1)
    statuses = {g["name"]: g["status"] for g in api.get("/api/v1/health/gateways").json()}
    assert statuses == {"Primary": "up", "Backup": "degraded", "Legacy": "down"}

    page.get_by_role("link", name="Health", exact=True).click()
    expect(page).to_have_url(re.compile(r"/health$"))
    for name, label in (("Primary", "Up"), ("Backup", "Degraded"), ("Legacy", "Down")):
        tile = page.locator("article.hl-tile", has=page.get_by_role("heading", name=name))
        expect(tile.locator(".hl-status")).to_have_text(label)
        expect(tile.locator(".beat")).to_have_count(90)
    expect(page.get_by_role("cell", name="Outage")).to_be_visible()
    for width in WIDTHS:
        audit_page(page, width, "dashboard", artifacts)

    # A gateway's page: figures, the heartbeat bar and both charts drawn by Chart.js.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.get_by_role("heading", name="Legacy").get_by_role("link").click()
    expect(page.get_by_role("heading", name="Legacy", level=1)).to_be_visible()
    expect(page.locator("#gateway-health-panel .hl-status")).to_have_text("Down")
    page.wait_for_function(
        "() => window.Chart && Chart.getChart('latency-chart') && Chart.getChart('errors-chart')"
    )
    assert page.locator("#latency-chart").bounding_box()["height"] > 100  # type: ignore[index]
    expect(page.get_by_text("Ongoing")).to_be_visible()
    for width in WIDTHS:
        audit_page(page, width, "gateway", artifacts)

    # The failure log (with a declined payment in it) and the alerts page (with a recipient).
    sandbox = api.post("/api/v1/gateways", json={"name": "Sandbox", "gateway_type": "sandbox"})
    invoice = api.post(
        "/api/v1/invoices",
        json={
            "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
            "currency": "USD",
            "line_items": [{"description": "Consulting", "quantity": 1, "unit_amount": 12_500}],
        },
    ).json()
    declined = api.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"gateway_id": sandbox.json()["id"], "payment_method": "4000000000009995"},
        headers={"Idempotency-Key": secrets.token_hex(8)},
    )
    assert declined.status_code == 201, declined.text
    api.post("/api/v1/alert-recipients", json={"email": "oncall@hooli.example"})
    for path, name in (("/health/failures", "failures"), ("/health/alerts", "alerts")):
        page.goto(f"{live_server}{path}")
        for width in WIDTHS:
            audit_page(page, width, name, artifacts)

    # Legacy answers again; the dashboard's next poll shows it up without a reload.
    page.set_viewport_size({"width": 1280, "height": 900})
    page.goto(f"{live_server}/health")
    legacy = page.locator("article.hl-tile", has=page.get_by_role("heading", name="Legacy"))
    expect(legacy.locator(".hl-status")).to_have_text("Down")
    api.patch(
        f"/api/v1/gateways/{ids['Legacy']}", json={"configuration": {"api_key": emulator.api_key}}
    )
    check_rounds(settings, [ids["Legacy"]], 1)
    # What the "every 30s" trigger does, without waiting 30 s for it.
    page.evaluate(
        "() => htmx.ajax('GET', '/health/tiles', {target: '#health-tiles', swap: 'outerHTML'})"
    )
    expect(legacy.locator(".hl-status")).to_have_text("Up")
    api.close()
    context.close()
    assert problems == []
