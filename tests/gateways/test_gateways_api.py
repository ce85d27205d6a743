"""A company admin manages gateway configurations through the JSON API."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from paygate.db import Database
from paygate.gateways.models import Gateway
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, create_gateway, sandbox_payload, stripe_payload

PROBLEM = "application/problem+json"


async def test_create_list_and_read_with_credentials_masked(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, localstripe_url: str
) -> None:
    created = await create_gateway(client, tenant, stripe_payload(localstripe_url))

    assert created["id"].startswith("gw_")
    assert created["configuration"]["secret_key"] == "sk_test_...4242"
    assert created["configuration"]["webhook_secret"] == "whsec_...aaaa"
    assert created["configuration"]["publishable_key"] == "pk_test_TYooMQauvdEDq54NiTphI7jx"
    assert set(created["credentials"]) == {"secret_key", "webhook_secret"}
    assert created["enabled"] is True
    assert created["payment_method_types"] == ["card"]
    assert created["supported_currencies"] == ["USD", "EUR"]
    assert created["last_test"] is None

    listed = (await client.get("/api/v1/gateways", headers=tenant.headers)).json()
    assert [g["id"] for g in listed] == [created["id"]]
    one = (await client.get(f"/api/v1/gateways/{created['id']}", headers=tenant.headers)).json()
    assert one == created

    # The other company sees nothing of it.
    assert (await client.get("/api/v1/gateways", headers=other_tenant.headers)).json() == []
    other = await client.get(f"/api/v1/gateways/{created['id']}", headers=other_tenant.headers)
    assert other.status_code == 404
    assert other.headers["content-type"] == PROBLEM


async def test_several_gateways_of_one_type(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    us = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    eu = await create_gateway(
        client, tenant, {**stripe_payload(localstripe_url), "name": "Stripe EU", "priority": 10}
    )
    listed = (await client.get("/api/v1/gateways", headers=tenant.headers)).json()
    assert [g["id"] for g in listed] == [eu["id"], us["id"]]  # by priority


async def test_update_keeps_a_secret_left_out(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, app: object, localstripe_url: str
) -> None:
    created = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    response = await client.patch(
        f"/api/v1/gateways/{created['id']}",
        json={
            "name": "Stripe (main)",
            "configuration": {"publishable_key": "pk_test_NEWxxxxxxxxxxxxxxxx", "secret_key": ""},
        },
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["name"] == "Stripe (main)"
    assert updated["configuration"]["secret_key"] == "sk_test_...4242"
    assert updated["configuration"]["publishable_key"] == "pk_test_NEWxxxxxxxxxxxxxxxx"
    assert updated["credentials"]["secret_key"] == created["credentials"]["secret_key"]

    # The stored secret still works: test connection uses it.
    tested = await client.post(f"/api/v1/gateways/{created['id']}/test", headers=tenant.headers)
    assert tested.json()["ok"] is True, tested.json()

    # Replacing the secret shows the new mask and a new change time.
    replaced = await client.patch(
        f"/api/v1/gateways/{created['id']}",
        json={"configuration": {"secret_key": "sk_test_" + "Z" * 20 + "9876"}},
        headers=tenant.headers,
    )
    assert replaced.json()["configuration"]["secret_key"] == "sk_test_...9876"
    assert (
        replaced.json()["credentials"]["secret_key"]["changed_at"]
        > created["credentials"]["secret_key"]["changed_at"]
    )


async def test_update_audit_diff_marks_secrets_changed_without_values(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    created = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    new_secret = "sk_test_" + "Q" * 24
    await client.patch(
        f"/api/v1/gateways/{created['id']}",
        json={"priority": 5, "configuration": {"secret_key": new_secret}},
        headers=tenant.headers,
    )
    entries = await audit_entries(client, tenant, object_id=created["id"], action="gateway.updated")
    assert len(entries) == 1
    changes = entries[0]["changes"]
    assert changes["priority"] == {"before": 100, "after": 5}
    assert changes["configuration.secret_key"] == {"before": "[changed]", "after": "[changed]"}
    assert "configuration.webhook_secret" not in changes
    assert new_secret not in str(entries)
    assert entries[0]["actor_label"] == tenant.email
    assert entries[0]["ip"] == "203.0.113.7"
    assert entries[0]["outcome"] == "success"


async def test_enable_and_disable_keep_the_configuration(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    created = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    disabled = (
        await client.post(f"/api/v1/gateways/{created['id']}/disable", headers=tenant.headers)
    ).json()
    assert disabled["enabled"] is False
    assert disabled["configuration"] == created["configuration"]
    enabled = (
        await client.post(f"/api/v1/gateways/{created['id']}/enable", headers=tenant.headers)
    ).json()
    assert enabled["enabled"] is True
    assert enabled["configuration"] == created["configuration"]
    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=created["id"])]
    assert actions == ["gateway.enabled", "gateway.disabled", "gateway.created"]


async def test_delete(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    created = await create_gateway(client, tenant, sandbox_payload())
    url = f"/api/v1/gateways/{created['id']}"
    assert (await client.delete(url, headers=other_tenant.headers)).status_code == 404
    deleted = await client.delete(url, headers=tenant.headers)
    assert deleted.json() == {"id": created["id"], "outcome": "deleted"}
    assert (await client.get(url, headers=tenant.headers)).status_code == 404
    assert (await client.get("/api/v1/gateways", headers=tenant.headers)).json() == []
    async with database.transaction() as session:
        assert (await session.get(Gateway, created["id"])) is None
    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=created["id"])]
    assert actions == ["gateway.deleted", "gateway.created"]


async def test_a_gateway_that_history_refers_to_is_archived_not_deleted(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    """Any row that references a gateway (payments will) keeps it: delete archives instead."""
    created = await create_gateway(client, tenant, sandbox_payload())
    async with database.transaction() as session:
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS test_gateway_history"
                " (gateway_id varchar(40) REFERENCES gateways(id))"
            )
        )
        await session.execute(
            text("INSERT INTO test_gateway_history VALUES (:id)"), {"id": created["id"]}
        )
    try:
        archived = await client.delete(f"/api/v1/gateways/{created['id']}", headers=tenant.headers)
        assert archived.json() == {"id": created["id"], "outcome": "archived"}
        assert (await client.get("/api/v1/gateways", headers=tenant.headers)).json() == []
        assert (
            await client.get(f"/api/v1/gateways/{created['id']}", headers=tenant.headers)
        ).status_code == 404
        async with database.transaction() as session:
            kept = await session.get(Gateway, created["id"])
            assert kept is not None
            assert kept.archived_at is not None
            assert kept.enabled is False
    finally:
        async with database.transaction() as session:
            await session.execute(text("DROP TABLE test_gateway_history"))


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"gateway_type": "bitcoin"}, "gateway_type"),
        (
            {"configuration": {"secret_key": "sk_test_abcdefghijklmnop", "colour": "red"}},
            "configuration.colour",
        ),
        ({"remove": "secret_key"}, "configuration.secret_key"),
        (
            {"configuration": {"secret_key": "sk_live_abcdefghijklmnopqrst"}},
            "configuration.secret_key",
        ),
        (
            {
                "configuration": {
                    "secret_key": "sk_test_abcdefghijklmnop",
                    "api_base_url": "not a url",
                }
            },
            "configuration.api_base_url",
        ),
        ({"supported_currencies": ["USD", "XYZ"]}, "supported_currencies.1"),
        ({"min_amount": 500, "max_amount": 100}, "min_amount"),
        ({"min_amount": "100"}, "min_amount"),
        ({"enabled": "yes"}, "enabled"),
        ({"payment_method_types": ["paypal"]}, "payment_method_types.0"),
        ({"environment": "staging"}, "environment"),
    ],
)
async def test_invalid_configuration_is_refused_with_the_field_named(
    client: httpx.AsyncClient, tenant: Tenant, change: dict[str, object], field: str
) -> None:
    payload = {
        "name": "Stripe",
        "gateway_type": "stripe",
        "environment": "test",
        "configuration": {
            "secret_key": "sk_test_abcdefghijklmnop",
            "publishable_key": "pk_test_abc",
            "webhook_secret": "whsec_abc",
        },
    }
    for key, value in change.items():
        if key == "remove":
            del payload["configuration"][value]  # type: ignore[attr-defined]
        elif key == "configuration":
            payload["configuration"] = {**payload["configuration"], **value}  # type: ignore[dict-item]
        else:
            payload[key] = value
    response = await client.post("/api/v1/gateways", json=payload, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    body = response.json()
    assert field in [e["field"] for e in body["errors"]], body
    assert "sk_test_abcdefghijklmnop" not in response.text
    assert (await client.get("/api/v1/gateways", headers=tenant.headers)).json() == []


async def test_a_live_key_on_a_test_gateway_is_explained(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    payload = stripe_payload("https://api.stripe.com", secret_key="sk_live_" + "x" * 24)
    response = await client.post("/api/v1/gateways", json=payload, headers=tenant.headers)
    assert response.status_code == 422
    [error] = response.json()["errors"]
    assert error == {
        "field": "configuration.secret_key",
        "message": "is for the other environment: a test gateway needs sk_test_ or rk_test_",
        "code": "invalid",
    }


async def test_live_gateways_need_https(client: httpx.AsyncClient, tenant: Tenant) -> None:
    payload = {
        "gateway_type": "custom",
        "environment": "live",
        "configuration": {
            "base_url": "http://pay.example.com",
            "api_key": "k" * 20,
            "webhook_secret": "w" * 20,
        },
    }
    response = await client.post("/api/v1/gateways", json=payload, headers=tenant.headers)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "configuration.base_url"


async def test_update_validation_failure_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    created = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    response = await client.patch(
        f"/api/v1/gateways/{created['id']}",
        json={"name": "Renamed", "configuration": {"secret_key": "sk_live_" + "x" * 20}},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert (
        await client.get(f"/api/v1/gateways/{created['id']}", headers=tenant.headers)
    ).json() == created
    changing_type = await client.patch(
        f"/api/v1/gateways/{created['id']}", json={"gateway_type": "paypal"}, headers=tenant.headers
    )
    assert changing_type.status_code == 422


async def test_gateway_types_describe_their_fields(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    types = {
        t["type"]: t
        for t in (await client.get("/api/v1/gateway-types", headers=tenant.headers)).json()
    }
    assert set(types) == {"stripe", "paypal", "square", "custom", "sandbox"}
    stripe_fields = {f["name"]: f for f in types["stripe"]["fields"]}
    assert list(stripe_fields) == [
        "secret_key",
        "publishable_key",
        "webhook_secret",
        "payment_page_flow",
        "api_base_url",
    ]
    assert stripe_fields["payment_page_flow"]["choices"] == ["elements", "checkout"]
    assert stripe_fields["secret_key"]["secret"] is True
    assert stripe_fields["secret_key"]["prefixes"]["live"] == ["sk_live_", "rk_live_"]
    assert stripe_fields["api_base_url"]["required"] is False
    assert [f["name"] for f in types["square"]["fields"]] == [
        "access_token",
        "application_id",
        "location_id",
        "webhook_signature_key",
        "api_base_url",
    ]
    assert [f["name"] for f in types["paypal"]["fields"]] == [
        "client_id",
        "client_secret",
        "webhook_id",
        "api_base_url",
    ]
    assert [f["name"] for f in types["custom"]["fields"]] == [
        "base_url",
        "api_key",
        "webhook_secret",
    ]
    assert types["sandbox"]["fields"] == []
    assert types["paypal"]["payment_method_types"] == ["paypal"]
