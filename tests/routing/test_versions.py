"""Every change to the rules is a version; a version can be read and restored (audited)."""

from __future__ import annotations

import httpx

from paygate.db import Database
from paygate.security.audit import Actor
from paygate.security.history import ConfigHistory, changes_between
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.routing.helpers import add_rule, preview, priority, rule_set, sandbox


async def test_edits_make_versions_and_a_restore_puts_an_old_one_back(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "A")
    b = await sandbox(client, tenant, "B")
    first = await add_rule(client, tenant, "Euro", priority(b), conditions={"currencies": ["EUR"]})
    await client.put(
        "/api/v1/routing-rules/default", json={"gateway_ids": [a]}, headers=tenant.headers
    )
    await client.patch(
        f"/api/v1/routing-rules/{first['id']}",
        json={"name": "Euro, renamed"},
        headers=tenant.headers,
    )
    await add_rule(client, tenant, "Everything to B", priority(b))
    assert (await preview(client, tenant))["gateways"][0]["gateway_id"] == b

    versions = (await client.get("/api/v1/routing-rules/versions", headers=tenant.headers)).json()
    assert [v["version"] for v in versions] == [4, 3, 2, 1]
    assert versions[0]["summary"] == 'rule "Everything to B" added'
    assert versions[2]["summary"] == "default list changed"
    assert versions[0]["actor"]["label"] == tenant.email

    two = (await client.get("/api/v1/routing-rules/versions/2", headers=tenant.headers)).json()
    assert two["default_gateway_ids"] == [a]
    assert [r["name"] for r in two["rules"]] == ["Euro"]

    restored = await client.post("/api/v1/routing-rules/versions/2/restore", headers=tenant.headers)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert body["version"] == 5
    assert [r["name"] for r in body["rules"]] == ["Euro"]
    assert body["rules"][0]["id"] == first["id"]
    assert body["default_gateway_ids"] == [a]
    assert (await preview(client, tenant))["gateways"][0]["gateway_id"] == a
    latest = (await client.get("/api/v1/routing-rules/versions", headers=tenant.headers)).json()[0]
    assert (latest["version"], latest["restored_from"]) == (5, 2)
    assert latest["summary"] == "restored version 2"

    # The restore can itself be undone: version 4 comes back.
    await client.post("/api/v1/routing-rules/versions/4/restore", headers=tenant.headers)
    assert [r["name"] for r in (await rule_set(client, tenant))["rules"]] == [
        "Euro, renamed",
        "Everything to B",
    ]

    restores = await audit_entries(client, tenant, action="routing_rules.restored")
    assert len(restores) == 2
    assert restores[-1]["detail"] == "Version 5: restored version 2."

    # Versions are per company.
    for path in ("/api/v1/routing-rules/versions/1", "/api/v1/routing-rules/versions/1/restore"):
        method = "POST" if path.endswith("restore") else "GET"
        answer = await client.request(method, path, headers=other_tenant.headers)
        assert answer.status_code == 404, answer.text
    assert (
        await client.get("/api/v1/routing-rules/versions", headers=other_tenant.headers)
    ).json() == []
    missing = await client.get("/api/v1/routing-rules/versions/99", headers=tenant.headers)
    assert missing.status_code == 404
    bad = await client.get("/api/v1/routing-rules/versions/0", headers=tenant.headers)
    assert bad.status_code == 422


async def test_an_edit_that_changes_nothing_makes_no_version(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    a = await sandbox(client, tenant, "A")
    rule = await add_rule(client, tenant, "All", priority(a))
    same = await client.patch(
        f"/api/v1/routing-rules/{rule['id']}", json={"name": "All"}, headers=tenant.headers
    )
    assert same.status_code == 200
    await client.post(
        "/api/v1/routing-rules/reorder", json={"rule_ids": [rule["id"]]}, headers=tenant.headers
    )
    assert (await rule_set(client, tenant))["version"] == 1


async def test_the_history_mechanism_numbers_versions_per_object_and_company(
    database: Database, tenant: Tenant, other_tenant: Tenant
) -> None:
    # One mechanism for every configuration (a gateway's, a webhook endpoint's): typed by
    # object type, scoped by company.
    actor = Actor("user", tenant.user_id, tenant.email)
    async with database.transaction() as session:
        gateways = ConfigHistory(session, tenant.company_id, "gateway")
        one = await gateways.record("gw_1", {"name": "A"}, actor=actor, summary="created")
        two = await gateways.record("gw_1", {"name": "B"}, actor=actor, summary="renamed")
        other = await gateways.record("gw_2", {"name": "C"}, actor=actor, summary="created")
        hooks = ConfigHistory(session, tenant.company_id, "webhook_endpoint")
        hook = await hooks.record("gw_1", {"url": "x"}, actor=actor, summary="created")
        theirs = ConfigHistory(session, other_tenant.company_id, "gateway")
        assert await theirs.versions("gw_1") == []
        assert (one.version, two.version, other.version, hook.version) == (1, 2, 1, 1)
        assert [v.version for v in await gateways.versions("gw_1")] == [2, 1]
        assert changes_between(one, two) == {"name": {"before": "A", "after": "B"}}
        assert changes_between(None, one) == {"name": {"before": None, "after": "A"}}
