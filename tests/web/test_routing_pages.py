"""The routing pages driven like a browser: rules (add, edit with errors inline, move up and
down, delete), default list, preview, simulation, versions and restore, retry policy."""

from __future__ import annotations

import re

import httpx

from tests.web.helpers import WebUser


async def sandbox(owner: WebUser, name: str) -> str:
    payload = {"gateway_type": "sandbox", "name": name, "supported_currencies": ["USD", "EUR"]}
    created = await owner.client.post("/api/v1/gateways", json=payload, headers=owner.bearer)
    assert created.status_code == 201, created.text
    return str(created.json()["id"])


def rule_form(name: str, *gateways: str, **fields: str) -> dict[str, str]:
    data = {"name": name, "enabled": "on", "action_type": "priority", **fields}
    for index in range(4):
        data[f"gateway_{index}"] = gateways[index] if index < len(gateways) else ""
        data.setdefault(f"percent_{index}", "")
    return data


def rule_names(page: str) -> list[str]:
    return re.findall(r'<h3 class="rt-name">([^<]+)', page)


async def test_rules_are_added_moved_edited_and_deleted_through_the_page(
    owner: WebUser, rival: WebUser
) -> None:
    a = await sandbox(owner, "Alpha")
    b = await sandbox(owner, "Beta")
    page = await owner.client.get("/routing")
    assert page.status_code == 200
    assert "No rules yet" in page.text
    assert 'href="/routing" aria-current="page"' in page.text

    form = await owner.client.get("/routing/rules/new")
    assert form.status_code == 200
    # A mistake comes back inline, with what was typed.
    refused = await owner.post(
        "/routing/rules", rule_form("Euro", a, currencies="EURO"), page="/routing/rules/new"
    )
    assert refused.status_code == 422
    assert "is not an ISO 4217 currency code" in refused.text or "at most 3" in refused.text
    assert 'value="EURO"' in refused.text
    created = await owner.post(
        "/routing/rules", rule_form("Euro", b, a, currencies="EUR"), page="/routing/rules/new"
    )
    assert created.status_code == 303, created.text
    split = rule_form("Split", a, b, action_type="split", percent_0="70", percent_1="20")
    bad_split = await owner.post("/routing/rules", split, page="/routing/rules/new")
    assert bad_split.status_code == 422
    assert "add up to 100" in bad_split.text
    split["percent_1"] = "30"
    assert (await owner.post("/routing/rules", split, page="/routing/rules/new")).status_code == 303

    listing = (await owner.client.get("/routing")).text
    assert rule_names(listing) == ["Euro", "Split"]
    assert "Currency EUR" in listing
    assert "Split: Alpha 70% · Beta 30%" in listing
    assert "Rule saved" in listing

    rules = (await owner.client.get("/api/v1/routing-rules", headers=owner.bearer)).json()["rules"]
    split_id = rules[1]["id"]
    moved = await owner.post(
        f"/routing/rules/{split_id}/move", {"direction": "up"}, page="/routing"
    )
    assert moved.status_code == 303
    assert rule_names((await owner.client.get("/routing")).text) == ["Split", "Euro"]

    edit = await owner.client.get(f"/routing/rules/{split_id}/edit")
    assert 'value="70"' in edit.text
    edited = await owner.post(
        f"/routing/rules/{split_id}/edit",
        rule_form("Split, renamed", a, b, action_type="split", percent_0="50", percent_1="50"),
        page=f"/routing/rules/{split_id}/edit",
    )
    assert edited.status_code == 303, edited.text
    assert "Split, renamed" in (await owner.client.get("/routing")).text

    deleted = await owner.post(f"/routing/rules/{split_id}/delete", page="/routing")
    assert deleted.status_code == 303
    assert rule_names((await owner.client.get("/routing")).text) == ["Euro"]

    # The rival cannot touch this company's rules or see them.
    for path in (f"/routing/rules/{rules[0]['id']}/edit",):
        assert (await rival.client.get(path)).status_code == 404
    move = await rival.post(f"/routing/rules/{rules[0]['id']}/move", {"direction": "up"})
    assert move.status_code == 404
    assert "No rules yet" in (await rival.client.get("/routing")).text


async def test_default_list_preview_simulation_and_restore(owner: WebUser) -> None:
    a = await sandbox(owner, "Alpha")
    b = await sandbox(owner, "Beta")
    saved = await owner.post("/routing/default", {"default_0": b, "default_1": a}, page="/routing")
    assert saved.status_code == 303
    assert "Now: Beta → Alpha" in (await owner.client.get("/routing")).text

    preview = await owner.post(
        "/routing/preview",
        {"amount": "12.50", "currency": "usd", "method": "card", "country": "DE"},
        htmx=True,
        page="/routing",
    )
    assert preview.status_code == 200
    assert "A payment of $12.50, card, from DE: Goes to Beta, then Alpha" in preview.text
    wrong = await owner.post(
        "/routing/preview", {"amount": "-3", "currency": "USD"}, htmx=True, page="/routing"
    )
    assert "more than zero" in wrong.text

    simulated = await owner.post("/routing/simulate", {}, htmx=True, page="/routing")
    assert simulated.status_code == 200
    assert "over 0 payments" in simulated.text

    # Version 1 set the default list; clearing it is version 2; restoring 1 makes version 3.
    await owner.post("/routing/default", {"default_0": ""}, page="/routing")
    assert "Now empty" in (await owner.client.get("/routing")).text
    restored = await owner.post("/routing/versions/1/restore", page="/routing")
    assert restored.status_code == 303
    page = (await owner.client.get("/routing")).text
    assert "Now: Beta → Alpha" in page
    assert "restored version 1" in page


async def test_the_retry_policy_page(owner: WebUser, client: httpx.AsyncClient) -> None:
    page = await owner.client.get("/routing/retries")
    assert page.status_code == 200
    assert "processing error" in page.text
    refused = await owner.post(
        "/routing/retries",
        {"max_attempts": "9", "breaker_failures": "5", "breaker_cooldown_seconds": "60"},
        page="/routing/retries",
    )
    assert refused.status_code == 422
    assert 'aria-invalid="true"' in refused.text
    saved = await owner.post(
        "/routing/retries",
        {
            "max_attempts": "2",
            "retry_decline_codes": "card_declined",
            "failover_customer_present": "on",
            "breaker_failures": "4",
            "breaker_cooldown_seconds": "90",
        },
        page="/routing/retries",
    )
    assert saved.status_code == 303, saved.text
    policy = (await owner.client.get("/api/v1/retry-policy", headers=owner.bearer)).json()
    assert policy["max_attempts"] == 2
    assert policy["failover_api"] is False
    assert policy["retry_decline_codes"] == ["card_declined"]
