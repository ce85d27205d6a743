"""/api/v1/routing-rules: create, edit, reorder, delete, default list, preview; tenancy."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.routing.helpers import add_rule, preview, priority, rule_set, sandbox


async def test_rules_are_kept_in_order_and_decide_where_payments_go(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "Alpha")
    b = await sandbox(client, tenant, "Beta")
    c = await sandbox(client, tenant, "Gamma", supported_currencies=["EUR"])
    await sandbox(client, other_tenant, "Theirs")
    assert await rule_set(client, tenant) == {"version": 0, "default_gateway_ids": [], "rules": []}

    eur = await add_rule(
        client, tenant, "Euro to Gamma", priority(c, a), conditions={"currencies": ["eur"]}
    )
    assert eur["position"] == 1
    assert eur["conditions"]["currencies"] == ["EUR"]
    big = await add_rule(
        client, tenant, "Big ones", priority(b, a), conditions={"amount_min": 100_000}
    )
    first = await add_rule(
        client,
        tenant,
        "Pro plan first",
        priority(b),
        conditions={"metadata": {"plan": "pro"}},
        position=1,
    )
    current = await rule_set(client, tenant)
    assert [r["id"] for r in current["rules"]] == [first["id"], eur["id"], big["id"]]
    assert [r["position"] for r in current["rules"]] == [1, 2, 3]
    assert current["version"] == 3

    routed = await preview(client, tenant, amount=5000, currency="EUR")
    assert [g["gateway_id"] for g in routed["gateways"]] == [c, a]
    assert routed["rule"] == {"id": eur["id"], "name": "Euro to Gamma", "position": 2}
    assert routed["explanation"].startswith("A payment of €50.00, card: Goes to Gamma, then Alpha")
    assert 'because rule 2 ("Euro to Gamma") matched' in routed["explanation"]
    pro = await preview(client, tenant, amount=5000, currency="EUR", metadata={"plan": "pro"})
    assert pro["rule"]["id"] == first["id"]
    fallback = await preview(client, tenant, amount=10)
    assert fallback["source"] == "all_eligible"
    assert [g["gateway_id"] for g in fallback["gateways"]] == [a, b]
    assert {s["gateway_id"]: s["reason"] for s in fallback["skipped"]} == {c: "currency"}

    # Reorder: big ones first.
    reordered = await client.post(
        "/api/v1/routing-rules/reorder",
        json={"rule_ids": [big["id"], first["id"], eur["id"]]},
        headers=tenant.headers,
    )
    assert reordered.status_code == 200, reordered.text
    assert [r["name"] for r in reordered.json()["rules"]] == [
        "Big ones",
        "Pro plan first",
        "Euro to Gamma",
    ]

    # Edit: conditions and action are replaced, the rest kept.
    edited = await client.patch(
        f"/api/v1/routing-rules/{big['id']}",
        json={"enabled": False, "action": priority(a)},
        headers=tenant.headers,
    )
    assert edited.status_code == 200, edited.text
    assert edited.json()["enabled"] is False
    assert edited.json()["conditions"]["amount_min"] == 100_000
    assert edited.json()["action"] == {"type": "priority", "gateway_ids": [a]}
    assert edited.json()["position"] == 1

    # The default list applies when no rule matches.
    defaulted = await client.put(
        "/api/v1/routing-rules/default", json={"gateway_ids": [b, a]}, headers=tenant.headers
    )
    assert defaulted.status_code == 200, defaulted.text
    plain = await preview(client, tenant, amount=10)
    assert plain["source"] == "default"
    assert [g["gateway_id"] for g in plain["gateways"]] == [b, a]

    deleted = await client.delete(f"/api/v1/routing-rules/{eur['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert [r["position"] for r in (await rule_set(client, tenant))["rules"]] == [1, 2]
    gone = await client.get(f"/api/v1/routing-rules/{eur['id']}", headers=tenant.headers)
    assert gone.status_code == 404

    actions = [e["action"] for e in await audit_entries(client, tenant)]
    for action in (
        "routing_rule.created",
        "routing_rules.reordered",
        "routing_rule.updated",
        "routing_default.updated",
        "routing_rule.deleted",
    ):
        assert action in actions

    # The other company sees none of it.
    assert (await rule_set(client, other_tenant))["rules"] == []
    assert (await preview(client, other_tenant))["gateways"][0]["name"] == "Theirs"


async def test_another_companys_rules_and_gateways_are_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    mine = await sandbox(client, tenant, "Mine")
    theirs = await sandbox(client, other_tenant, "Theirs")
    rule = await add_rule(client, other_tenant, "Theirs", priority(theirs))
    for method, body in (("GET", None), ("PATCH", {"name": "x"}), ("DELETE", None)):
        answer = await client.request(
            method, f"/api/v1/routing-rules/{rule['id']}", json=body, headers=tenant.headers
        )
        assert answer.status_code == 404, (method, answer.text)
    # Their gateway cannot be named in my rules, nor in my default list.
    refused = await add_rule(client, tenant, "Sneaky", priority(mine, theirs), expect=422)
    assert refused["errors"][0]["field"] == "action.gateway_ids.1"
    assert refused["errors"][0]["code"] == "unknown_gateway"
    default = await client.put(
        "/api/v1/routing-rules/default", json={"gateway_ids": [theirs]}, headers=tenant.headers
    )
    assert default.status_code == 422
    moved = await client.post(
        "/api/v1/routing-rules/reorder", json={"rule_ids": [rule["id"]]}, headers=tenant.headers
    )
    assert moved.status_code == 422
    assert (await rule_set(client, other_tenant))["rules"][0]["name"] == "Theirs"
    assert (await rule_set(client, tenant))["version"] == 0


async def test_bad_rules_are_refused_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "A")
    b = await sandbox(client, tenant, "B")
    cases = [
        ({"name": "", "action": priority(a)}, "name"),
        (
            {"name": "x", "action": {"type": "priority", "gateway_ids": []}},
            "action.priority.gateway_ids",
        ),
        ({"name": "x", "action": {"type": "random", "gateway_ids": [a]}}, "action"),
        ({"name": "x", "action": priority(a, a)}, "action.gateway_ids.1"),
        (
            {
                "name": "x",
                "action": {
                    "type": "split",
                    "split": [{"gateway_id": a, "percent": 50}, {"gateway_id": b, "percent": 40}],
                },
            },
            "action.split",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"currencies": ["XXQ"]}},
            "conditions.currencies.0",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"customer_countries": ["QQ"]}},
            "conditions.customer_countries.0",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"amount_min": 5, "amount_max": 1}},
            "conditions.amount_min",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"amount_min": -1}},
            "conditions.amount_min",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"card_brands": ["visaa"]}},
            "conditions.card_brands.0",
        ),
        (
            {"name": "x", "action": priority(a), "conditions": {"colour": "red"}},
            "conditions.colour",
        ),
        ({"name": "x", "action": priority(a), "unknown": 1}, "unknown"),
        ({"name": "x", "action": priority(a), "position": 0}, "position"),
        ({"name": "x", "action": priority(a), "enabled": "yes"}, "enabled"),
    ]
    for body, field in cases:
        answer = await client.post("/api/v1/routing-rules", json=body, headers=tenant.headers)
        assert answer.status_code == 422, (body, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
        fields = [e["field"] for e in answer.json()["errors"]]
        assert any(f.startswith(field) for f in fields), (field, fields)
    malformed = await client.post(
        "/api/v1/routing-rules",
        content=b"{not json",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert malformed.status_code == 400
    assert (await rule_set(client, tenant))["version"] == 0
    bad_preview = await client.post(
        "/api/v1/routing-rules/preview",
        json={"amount": 0, "currency": "USD"},
        headers=tenant.headers,
    )
    assert bad_preview.status_code == 422
    bad_currency = await client.post(
        "/api/v1/routing-rules/preview",
        json={"amount": 5, "currency": "ZZZ"},
        headers=tenant.headers,
    )
    assert bad_currency.status_code == 422


async def test_a_viewer_key_reads_rules_but_cannot_change_them(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "A")
    created = await client.post(
        "/api/v1/api-keys",
        json={"name": "reader", "scopes": ["gateways:read"]},
        headers=tenant.headers,
    )
    reader = {"Authorization": f"Bearer {created.json()['key']}"}
    assert (await client.get("/api/v1/routing-rules", headers=reader)).status_code == 200
    refused = await client.post(
        "/api/v1/routing-rules", json={"name": "x", "action": priority(a)}, headers=reader
    )
    assert refused.status_code == 403
    assert (await client.get("/api/v1/retry-policy", headers=reader)).status_code == 200
