"""Success-rate routing from the payments' own attempts, and the 30-day simulation."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant
from tests.payments.helpers import create_invoice, pay
from tests.routing.helpers import add_rule, preview, priority, sandbox

SUCCEEDS = "4242424242424242"
SOFT_DECLINE = "4000000000000119"
HARD_DECLINE = "4000000000000002"


async def _payments(
    client: httpx.AsyncClient, tenant: Tenant, gateway_id: str, card: str, count: int, **fields: str
) -> None:
    for _ in range(count):
        invoice = await create_invoice(client, tenant, amount=2000, **fields)  # type: ignore[arg-type]
        await pay(client, tenant, invoice["id"], gateway_id=gateway_id, payment_method=card)


async def test_success_rate_routing_reads_recent_attempts(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "Often failing")
    b = await sandbox(client, tenant, "Reliable")
    await _payments(client, tenant, a, SUCCEEDS, 5)
    await _payments(client, tenant, a, SOFT_DECLINE, 5)
    await _payments(client, tenant, b, SUCCEEDS, 9)
    await _payments(client, tenant, b, SOFT_DECLINE, 1)
    # The other company's attempts at its own gateways count for nothing here.
    theirs = await sandbox(client, other_tenant, "Theirs")
    await _payments(client, other_tenant, theirs, SOFT_DECLINE, 3)
    action = {
        "type": "success_rate",
        "gateway_ids": [a, b],
        "exploration_percent": 0,
        "min_attempts": 10,
    }
    await add_rule(client, tenant, "Best first", action)
    routed = await preview(client, tenant, payment_id="pay_fixed")
    assert [g["gateway_id"] for g in routed["gateways"]] == [b, a]
    assert [g["note"] for g in routed["gateways"]] == ["90% success", "50% success"]
    # Too few attempts to rate: listed order.
    strict = {**action, "min_attempts": 50}
    rules = (await client.get("/api/v1/routing-rules", headers=tenant.headers)).json()["rules"]
    await client.patch(
        f"/api/v1/routing-rules/{rules[0]['id']}", json={"action": strict}, headers=tenant.headers
    )
    unrated = await preview(client, tenant, payment_id="pay_fixed")
    assert [g["gateway_id"] for g in unrated["gateways"]] == [a, b]
    assert unrated["gateways"][0]["note"] == "too few recent attempts to rate"


async def test_a_proposed_rule_set_is_simulated_over_the_last_thirty_days(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "A")
    b = await sandbox(client, tenant, "B")
    for _ in range(4):
        invoice = await create_invoice(client, tenant, amount=1500)
        await pay(client, tenant, invoice["id"])  # routed to A: the first by priority
    for _ in range(2):
        invoice = await create_invoice(client, tenant, amount=1500, currency="EUR")
        await pay(client, tenant, invoice["id"], payment_method=HARD_DECLINE)
    await _payments(client, other_tenant, await sandbox(client, other_tenant, "X"), SUCCEEDS, 2)

    proposal = {
        "rules": [
            {
                "name": "Euro to B",
                "conditions": {"currencies": ["EUR"]},
                "action": {"type": "priority", "gateway_ids": [b]},
            }
        ]
    }
    answer = await client.post(
        "/api/v1/routing-rules/simulate", json=proposal, headers=tenant.headers
    )
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["payments"] == 6
    assert result["changed"] == 2
    assert result["unroutable"] == 0
    by_gateway = {g["gateway_id"]: g for g in result["gateways"]}
    assert (by_gateway[a]["simulated"], by_gateway[a]["actual"]) == (4, 6)
    assert by_gateway[a]["actual_succeeded"] == 4
    assert (by_gateway[b]["simulated"], by_gateway[b]["actual"]) == (2, 0)
    # Nothing was saved.
    assert (await client.get("/api/v1/routing-rules", headers=tenant.headers)).json()[
        "version"
    ] == 0

    # The current rules (none), and a stored version, can be simulated too.
    current = (
        await client.post("/api/v1/routing-rules/simulate", json={}, headers=tenant.headers)
    ).json()
    assert current["changed"] == 0
    await add_rule(client, tenant, "All to B", priority(b))
    stored = (
        await client.post(
            "/api/v1/routing-rules/simulate", json={"version": 1}, headers=tenant.headers
        )
    ).json()
    assert {g["gateway_id"]: g["simulated"] for g in stored["gateways"]}[b] == 6

    # A proposal naming another company's gateway is refused.
    theirs = (await client.get("/api/v1/gateways", headers=other_tenant.headers)).json()[0]["id"]
    refused = await client.post(
        "/api/v1/routing-rules/simulate",
        json={"rules": [{"name": "x", "action": {"type": "priority", "gateway_ids": [theirs]}}]},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "rules.0.action.gateway_ids.0"
    unknown_version = await client.post(
        "/api/v1/routing-rules/simulate", json={"version": 40}, headers=tenant.headers
    )
    assert unknown_version.status_code == 404
