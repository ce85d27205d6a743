"""The webhook endpoints API: create with the secret shown once, change, disable, delete;
bad input answered 4xx problem+json with nothing changed; another company's endpoint 404;
every change audited without the secret; scopes gate it."""

from __future__ import annotations

import base64
import re
import secrets

import httpx
import pytest
from sqlalchemy import func, select

from paygate.db import Database
from paygate.webhooks.outbound.models import WebhookEndpoint
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.payments.test_payment_access import api_key
from tests.webhooks.outbound.conftest import ALL_EVENTS, create_endpoint
from tests.webhooks.outbound.receiver import Receiver

SECRET_FORMAT = re.compile(r"^whsec_[A-Za-z0-9+/]{32}$")


async def endpoint_count(database: Database, tenant: Tenant) -> int:
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count())
            .select_from(WebhookEndpoint)
            .where(WebhookEndpoint.company_id == tenant.company_id)
        )
    return int(count or 0)


async def test_an_endpoint_is_created_with_its_secret_shown_once(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, database: Database
) -> None:
    created = await create_endpoint(
        client,
        tenant,
        receiver.url(),
        ["payment.succeeded", "invoice.paid", "payment.succeeded"],
        description="Order system",
    )
    secret = created["signing_secret"]
    assert SECRET_FORMAT.match(secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 24
    assert created["id"].startswith("ep_")
    assert created["event_types"] == ["payment.succeeded", "invoice.paid"]
    assert created["enabled"] is True
    assert created["description"] == "Order system"
    assert created["secret"]["masked"] == f"whsec_...{secret[-4:]}"
    assert created["secret"]["previous_valid_until"] is None

    # Never again: not when read, not in the list.
    one = await client.get(f"/api/v1/webhook-endpoints/{created['id']}", headers=tenant.headers)
    listed = await client.get("/api/v1/webhook-endpoints", headers=tenant.headers)
    for response in (one, listed):
        assert response.status_code == 200
        assert secret not in response.text
        assert "signing_secret" not in response.text
    assert [e["id"] for e in listed.json()] == [created["id"]]

    # Stored encrypted: the row holds neither the secret nor its raw bytes.
    async with database.transaction() as session:
        row = await session.get(WebhookEndpoint, created["id"])
        assert row is not None
        raw = base64.b64decode(secret.removeprefix("whsec_"))
        assert secret.encode() not in row.secret_ciphertext
        assert raw not in row.secret_ciphertext
        assert secret not in str(row.secret_hint)

    [entry] = await audit_entries(client, tenant, object_id=created["id"])
    assert entry["action"] == "webhook_endpoint.created"
    assert entry["changes"]["url"] == {"before": None, "after": receiver.url()}
    assert secret not in str(entry)


async def test_a_company_may_bring_its_own_secret(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    mine = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    created = await create_endpoint(client, tenant, receiver.url(), secret=mine)
    assert created["signing_secret"] == mine
    refused = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": receiver.url(), "event_types": ALL_EVENTS, "secret": "whsec_short"},
        headers=tenant.headers,
    )
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["field"] == "secret"
    assert "whsec_short" not in refused.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"event_types": ["payment.succeeded"]}, "url"),
        ({"url": "https://hooks.example.com/x"}, "event_types"),
        ({"url": "https://hooks.example.com/x", "event_types": []}, "event_types"),
        ({"url": "https://hooks.example.com/x", "event_types": ["payment.exploded"]}, None),
        ({"url": "ftp://hooks.example.com/x", "event_types": ["invoice.paid"]}, "url"),
        ({"url": "https://u:p@hooks.example.com/", "event_types": ["invoice.paid"]}, "url"),
        ({"url": "not a url", "event_types": ["invoice.paid"]}, "url"),
        ({"url": "https://h.example.com/" + "a" * 2100, "event_types": ["invoice.paid"]}, "url"),
        ({"url": "https://h.example.com/", "event_types": ["invoice.paid"], "extra": 1}, "extra"),
        ({"url": "https://h.example.com/", "event_types": ["invoice.paid"], "enabled": "y"}, None),
    ],
)
async def test_bad_input_is_refused_and_changes_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    body: dict[str, object],
    field: str | None,
) -> None:
    response = await client.post("/api/v1/webhook-endpoints", json=body, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"].endswith("/validation-error")
    if field is not None:
        assert problem["errors"][0]["field"] == field
    assert await endpoint_count(database, tenant) == 0


async def test_malformed_json_is_a_400(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.post(
        "/api/v1/webhook-endpoints",
        content=b"{not json",
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_endpoint_is_changed_disabled_and_deleted_with_audit(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    created = await create_endpoint(client, tenant, receiver.url(), ["payment.succeeded"])
    path = f"/api/v1/webhook-endpoints/{created['id']}"
    changed = await client.patch(
        path,
        json={
            "url": receiver.url("other"),
            "event_types": ["refund.failed"],
            "description": "Refund desk",
        },
        headers=tenant.headers,
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["url"] == receiver.url("other")
    assert changed.json()["event_types"] == ["refund.failed"]

    bad = await client.patch(path, json={"event_types": ["nope"]}, headers=tenant.headers)
    assert bad.status_code == 422
    assert (await client.get(path, headers=tenant.headers)).json()["event_types"] == [
        "refund.failed"
    ]

    disabled = await client.patch(path, json={"enabled": False}, headers=tenant.headers)
    assert disabled.json()["enabled"] is False
    assert disabled.json()["disabled_reason"] == "manual"
    enabled = await client.patch(path, json={"enabled": True}, headers=tenant.headers)
    assert (enabled.json()["enabled"], enabled.json()["disabled_reason"]) == (True, None)

    deleted = await client.delete(path, headers=tenant.headers)
    assert deleted.json() == {"id": created["id"], "deleted": True}
    assert (await client.get(path, headers=tenant.headers)).status_code == 404

    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=created["id"])]
    assert sorted(actions) == sorted(
        [
            "webhook_endpoint.created",
            "webhook_endpoint.updated",
            "webhook_endpoint.updated",
            "webhook_endpoint.updated",
            "webhook_endpoint.deleted",
        ]
    )


async def test_another_company_s_endpoint_is_not_found(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, receiver: Receiver
) -> None:
    created = await create_endpoint(client, tenant, receiver.url())
    sent = await client.post(
        f"/api/v1/webhook-endpoints/{created['id']}/test", headers=tenant.headers
    )
    delivery_id = sent.json()["id"]
    base = f"/api/v1/webhook-endpoints/{created['id']}"
    theirs = other_tenant.headers
    attempts = [
        await client.get(base, headers=theirs),
        await client.patch(base, json={"enabled": False}, headers=theirs),
        await client.delete(base, headers=theirs),
        await client.post(f"{base}/rotate-secret", json={}, headers=theirs),
        await client.post(f"{base}/test", headers=theirs),
        await client.get(f"{base}/deliveries", headers=theirs),
        await client.get(f"{base}/deliveries/{delivery_id}", headers=theirs),
        await client.post(f"{base}/deliveries/{delivery_id}/redeliver", headers=theirs),
    ]
    for response in attempts:
        assert response.status_code == 404, (response.request.url, response.text)
        assert response.headers["content-type"] == "application/problem+json"
    assert (await client.get("/api/v1/webhook-endpoints", headers=theirs)).json() == []
    # A delivery id under another endpoint of the owner's is not found either.
    second = await create_endpoint(client, tenant, receiver.url())
    crossed = await client.get(
        f"/api/v1/webhook-endpoints/{second['id']}/deliveries/{delivery_id}",
        headers=tenant.headers,
    )
    assert crossed.status_code == 404
    still = await client.get(base, headers=tenant.headers)
    assert still.json()["enabled"] is True


async def test_scopes_gate_the_endpoints(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver
) -> None:
    created = await create_endpoint(client, tenant, receiver.url())
    reader = await api_key(client, tenant, "webhooks:read")
    writer = await api_key(client, tenant, "webhooks:read", "webhooks:write")
    assert (await client.get("/api/v1/webhook-endpoints", headers=reader)).status_code == 200
    body = {"url": receiver.url(), "event_types": ["invoice.paid"]}
    refused = await client.post("/api/v1/webhook-endpoints", json=body, headers=reader)
    assert refused.status_code == 403
    rotate = f"/api/v1/webhook-endpoints/{created['id']}/rotate-secret"
    assert (await client.post(rotate, json={}, headers=reader)).status_code == 403
    made = await client.post("/api/v1/webhook-endpoints", json=body, headers=writer)
    assert made.status_code == 201
    [entry] = await audit_entries(client, tenant, object_id=made.json()["id"])
    assert entry["actor_type"] == "api_key"


async def test_the_event_types_are_listed(client: httpx.AsyncClient, tenant: Tenant) -> None:
    response = await client.get("/api/v1/webhook-event-types", headers=tenant.headers)
    assert [t["type"] for t in response.json()] == ALL_EVENTS
