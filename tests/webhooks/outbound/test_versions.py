"""Every change to a webhook endpoint is a version; a version's settings can be read and
restored (audited), the signing secret is never in a version and a restore keeps it."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
from sqlalchemy import func, select

from paygate.db import Database
from paygate.security.crypto import Keyring
from paygate.security.history import ConfigVersion
from paygate.settings import Settings
from paygate.webhooks.outbound import secrets as signing
from paygate.webhooks.outbound.models import WebhookEndpoint
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.webhooks.outbound.conftest import create_endpoint
from tests.webhooks.outbound.receiver import Receiver

FIRST_SECRET = "whsec_" + base64.b64encode(b"canary-first-signing-key!").decode()
ROTATED_SECRET = "whsec_" + base64.b64encode(b"canary-rotated-signing-key").decode()


def versions_path(endpoint_id: str, suffix: str = "") -> str:
    return f"/api/v1/webhook-endpoints/{endpoint_id}/versions{suffix}"


async def versions_of(client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str) -> Any:
    answer = await client.get(versions_path(endpoint_id), headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def stored_snapshots(database: Database, endpoint_id: str) -> list[dict[str, Any]]:
    async with database.transaction() as session:
        rows = await session.execute(
            select(ConfigVersion.snapshot).where(ConfigVersion.object_id == endpoint_id)
        )
        return list(rows.scalars().all())


async def test_edits_make_versions_and_restoring_one_keeps_the_signing_secret(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    receiver: Receiver,
    database: Database,
    settings: Settings,
) -> None:
    created = await create_endpoint(
        client, tenant, receiver.url(), ["payment.succeeded"], secret=FIRST_SECRET
    )
    endpoint_id = created["id"]
    base = f"/api/v1/webhook-endpoints/{endpoint_id}"
    theirs = await create_endpoint(client, other_tenant, receiver.url())

    first_edit = {"url": receiver.url("moved"), "event_types": ["invoice.paid"]}
    second_edit = {"description": "Orders", "enabled": False}
    for body in (first_edit, second_edit, second_edit):  # the last one changes nothing
        edited = await client.patch(base, json=body, headers=tenant.headers)
        assert edited.status_code == 200, edited.text
    rotated = await client.post(
        f"{base}/rotate-secret",
        json={"secret": ROTATED_SECRET, "grace_period_hours": 0},
        headers=tenant.headers,
    )
    assert rotated.status_code == 200, rotated.text

    versions = await versions_of(client, tenant, endpoint_id)
    assert [(v["version"], v["summary"]) for v in versions] == [
        (4, "signing secret rotated"),
        (3, "description changed; disabled"),
        (2, "URL and events changed"),
        (1, "created"),
    ]
    assert versions[0]["actor"]["label"] == tenant.email

    one = await client.get(versions_path(endpoint_id, "/1"), headers=tenant.headers)
    assert one.status_code == 200, one.text
    first = one.json()
    assert (first["url"], first["event_types"]) == (receiver.url(), ["payment.succeeded"])
    assert (first["enabled"], first["description"]) == (True, None)
    assert first["secret"]["masked"] == signing.mask(FIRST_SECRET)

    restored = await client.post(versions_path(endpoint_id, "/1/restore"), headers=tenant.headers)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["url"], body["event_types"]) == (receiver.url(), ["payment.succeeded"])
    assert (body["enabled"], body["disabled_reason"], body["description"]) == (True, None, None)
    assert body["secret"]["masked"] == signing.mask(ROTATED_SECRET)
    assert body["kept"] == ["signing_secret"]
    assert "current signing secret was kept" in body["note"]
    assert (body["restored"]["version"], body["restored"]["restored_from"]) == (5, 1)
    read = (await client.get(base, headers=tenant.headers)).json()
    assert {k: v for k, v in body.items() if k not in ("restored", "kept", "note")} == read

    async with database.transaction() as session:
        row = (
            await session.execute(select(WebhookEndpoint).where(WebhookEndpoint.id == endpoint_id))
        ).scalar_one()
        assert (row.url, row.event_types, row.enabled) == (
            receiver.url(),
            ["payment.succeeded"],
            True,
        )
        keyring = Keyring.parse(settings.master_keys_text())
        assert signing.open_secrets(row, keyring).current == ROTATED_SECRET

    [entry] = await audit_entries(client, tenant, action="webhook_endpoint.restored")
    assert entry["object_id"] == endpoint_id
    assert entry["detail"] == (
        "Version 5: restored version 1. Versions hold no secrets: the current signing "
        "secret was kept."
    )
    assert entry["changes"]["url"] == {"before": receiver.url("moved"), "after": receiver.url()}

    # No secret anywhere: the stored snapshots, the answers, the audit log.
    seen = [
        json.dumps(await stored_snapshots(database, endpoint_id)),
        json.dumps(await versions_of(client, tenant, endpoint_id)),
        json.dumps(body),
        json.dumps(await audit_entries(client, tenant, object_id=endpoint_id)),
    ]
    for number in range(1, 6):
        seen.append(
            (
                await client.get(versions_path(endpoint_id, f"/{number}"), headers=tenant.headers)
            ).text
        )
    for secret in (FIRST_SECRET, ROTATED_SECRET):
        for text in seen:
            assert secret not in text
            assert secret[-12:] not in text

    # Another company: not found; its own history is apart.
    for method, suffix in (("GET", ""), ("GET", "/1"), ("POST", "/1/restore")):
        answer = await client.request(
            method, versions_path(endpoint_id, suffix), headers=other_tenant.headers
        )
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert [v["version"] for v in await versions_of(client, other_tenant, theirs["id"])] == [1]
    assert (
        await client.get(versions_path(theirs["id"]), headers=tenant.headers)
    ).status_code == 404

    # Deleting the endpoint drops its versions with it (the audit log keeps the changes).
    assert (await client.delete(base, headers=tenant.headers)).status_code == 200
    assert await stored_snapshots(database, endpoint_id) == []
    assert (await client.get(versions_path(endpoint_id), headers=tenant.headers)).status_code == 404


async def test_bad_version_numbers(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, database: Database
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    for suffix, status in (
        ("/2", 404),
        ("/2/restore", 404),
        ("/0", 422),
        ("/-3", 422),
        ("/two", 422),
        ("/99999999999/restore", 422),
    ):
        method = "POST" if suffix.endswith("restore") else "GET"
        answer = await client.request(
            method, versions_path(endpoint["id"], suffix), headers=tenant.headers
        )
        assert answer.status_code == status, (suffix, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    async with database.transaction() as session:
        count = await session.scalar(
            select(func.count()).where(ConfigVersion.object_id == endpoint["id"])
        )
    assert count == 1
