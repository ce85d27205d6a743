"""Every change to a gateway is a version; a version's settings can be read and restored
(audited), the credentials are never in a version and a restore keeps the current ones."""

from __future__ import annotations

import json
from typing import Any

import httpx
from sqlalchemy import select, text

from paygate.db import Database
from paygate.gateways.credentials import open_envelope
from paygate.gateways.models import Gateway
from paygate.security.crypto import Keyring
from paygate.security.history import BASELINE, ConfigVersion
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, create_gateway, sandbox_payload, stripe_payload

# Secrets that must never show up in a version, an answer or the audit log.
CANARY_KEY = "sk_test_" + "CanaryFirstSecretKey0001"
CANARY_ROTATED = "sk_test_" + "CanaryRotatedSecretKey02"
CANARY_WEBHOOK = "whsec_" + "CanaryWebhookSigningSecret77"
EMULATOR = "http://127.0.0.1:9"  # never called: no test of the connection here


def versions_path(gateway_id: str, suffix: str = "") -> str:
    return f"/api/v1/gateways/{gateway_id}/versions{suffix}"


async def versions_of(client: httpx.AsyncClient, tenant: Tenant, gateway_id: str) -> Any:
    answer = await client.get(versions_path(gateway_id), headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def patch(
    client: httpx.AsyncClient, tenant: Tenant, gateway_id: str, body: dict[str, Any]
) -> dict[str, Any]:
    answer = await client.patch(f"/api/v1/gateways/{gateway_id}", json=body, headers=tenant.headers)
    assert answer.status_code == 200, answer.text
    result: dict[str, Any] = answer.json()
    return result


async def stored_versions(database: Database, gateway_id: str) -> list[ConfigVersion]:
    async with database.transaction() as session:
        rows = await session.execute(
            select(ConfigVersion)
            .where(ConfigVersion.object_id == gateway_id)
            .order_by(ConfigVersion.version)
        )
        return list(rows.scalars().all())


async def test_edits_make_versions_and_restoring_one_keeps_the_current_credentials(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    settings: Settings,
) -> None:
    payload = stripe_payload(EMULATOR, secret_key=CANARY_KEY)
    payload["configuration"]["webhook_secret"] = CANARY_WEBHOOK
    created = await create_gateway(client, tenant, payload)
    gateway_id = created["id"]
    theirs = await create_gateway(client, other_tenant, sandbox_payload("Theirs"))

    await patch(client, tenant, gateway_id, {"name": "Stripe EU", "priority": 10})
    await patch(
        client,
        tenant,
        gateway_id,
        {
            "public_label": "Card",
            "configuration": {"secret_key": CANARY_ROTATED, "api_base_url": ""},
        },
    )
    # Saving the same settings again changes nothing: no version.
    await patch(client, tenant, gateway_id, {"name": "Stripe EU"})

    versions = await versions_of(client, tenant, gateway_id)
    assert [v["version"] for v in versions] == [3, 2, 1]
    assert [v["summary"] for v in versions] == [
        "label for customers and API base URL changed; secret key replaced",
        "name and priority changed",
        "created",
    ]
    assert versions[0]["actor"]["label"] == tenant.email
    assert versions[0]["restored_from"] is None

    one = await client.get(versions_path(gateway_id, "/1"), headers=tenant.headers)
    assert one.status_code == 200, one.text
    first = one.json()
    assert (first["name"], first["priority"], first["public_label"]) == ("Stripe US", 100, None)
    assert first["configuration"]["api_base_url"] == EMULATOR
    assert first["configuration"]["secret_key"] == "sk_test_...0001"
    assert first["credentials"]["secret_key"]["masked"] == "sk_test_...0001"
    assert first["archived"] is False

    restored = await client.post(versions_path(gateway_id, "/1/restore"), headers=tenant.headers)
    assert restored.status_code == 200, restored.text
    body = restored.json()
    assert (body["name"], body["priority"], body["public_label"]) == ("Stripe US", 100, None)
    assert body["configuration"]["api_base_url"] == EMULATOR
    # The credentials are the current ones, and the answer says so.
    assert body["configuration"]["secret_key"] == "sk_test_...ey02"
    assert body["kept"] == ["secret_key", "webhook_secret"]
    assert "current secret key and webhook signing secret were kept" in body["note"]
    assert (body["restored"]["version"], body["restored"]["restored_from"]) == (4, 1)
    assert body["restored"]["summary"] == "restored version 1"
    read = (await client.get(f"/api/v1/gateways/{gateway_id}", headers=tenant.headers)).json()
    assert {k: v for k, v in body.items() if k not in ("restored", "kept", "note")} == read

    # What the database holds: version 1's settings, the rotated secret.
    async with database.transaction() as session:
        row = (await session.execute(select(Gateway).where(Gateway.id == gateway_id))).scalar_one()
        assert (row.name, row.priority, row.public_label) == ("Stripe US", 100, None)
        assert row.public_config["api_base_url"] == EMULATOR
        secrets = open_envelope(row, Keyring.parse(settings.master_keys_text())).current
        assert secrets["secret_key"] == CANARY_ROTATED

    latest = (await versions_of(client, tenant, gateway_id))[0]
    assert (latest["version"], latest["restored_from"]) == (4, 1)

    entries = await audit_entries(client, tenant, action="gateway.restored")
    assert len(entries) == 1
    assert entries[0]["object_id"] == gateway_id
    assert entries[0]["detail"].startswith("Version 4: restored version 1. Versions hold no")
    assert entries[0]["changes"]["name"] == {"before": "Stripe EU", "after": "Stripe US"}
    updated = await audit_entries(client, tenant, action="gateway.updated")
    assert updated[-1]["detail"] == "Version 2: name and priority changed."

    # No secret anywhere: not in the stored snapshots, the answers or the audit log.
    answers = [
        json.dumps(await versions_of(client, tenant, gateway_id)),
        json.dumps(body),
        json.dumps(await audit_entries(client, tenant, object_id=gateway_id)),
    ]
    for number in range(1, 5):
        detail = await client.get(versions_path(gateway_id, f"/{number}"), headers=tenant.headers)
        answers.append(detail.text)
    answers += [json.dumps(v.snapshot) for v in await stored_versions(database, gateway_id)]
    for canary in (CANARY_KEY, CANARY_ROTATED, CANARY_WEBHOOK):
        for answer in answers:
            assert canary not in answer
            assert canary[-12:] not in answer

    # Another company: not found, as if the gateway did not exist; its own are apart.
    for method, suffix in (("GET", ""), ("GET", "/1"), ("POST", "/1/restore")):
        answer = await client.request(
            method, versions_path(gateway_id, suffix), headers=other_tenant.headers
        )
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
    assert [v["version"] for v in await versions_of(client, other_tenant, theirs["id"])] == [1]
    missing = await client.get(versions_path(theirs["id"]), headers=tenant.headers)
    assert missing.status_code == 404


async def test_bad_version_numbers(client: httpx.AsyncClient, tenant: Tenant) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    for suffix, status in (
        ("/2", 404),
        ("/2/restore", 404),
        ("/0", 422),
        ("/-1", 422),
        ("/abc", 422),
        ("/99999999999", 422),
        ("/0/restore", 422),
    ):
        method = "POST" if suffix.endswith("restore") else "GET"
        answer = await client.request(
            method, versions_path(gateway["id"], suffix), headers=tenant.headers
        )
        assert answer.status_code == status, (suffix, answer.text)
        assert answer.headers["content-type"] == "application/problem+json"
    assert len(await versions_of(client, tenant, gateway["id"])) == 1


async def test_enable_disable_and_archive_are_versions_and_an_archived_one_is_not_restored(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    gateway_id = gateway["id"]
    await client.post(f"/api/v1/gateways/{gateway_id}/disable", headers=tenant.headers)
    await client.post(f"/api/v1/gateways/{gateway_id}/disable", headers=tenant.headers)
    await client.post(f"/api/v1/gateways/{gateway_id}/enable", headers=tenant.headers)
    async with database.transaction() as session:
        await session.execute(
            text(
                "CREATE TABLE IF NOT EXISTS test_gateway_versions_refs"
                " (gateway_id varchar(40) REFERENCES gateways(id))"
            )
        )
        await session.execute(
            text("INSERT INTO test_gateway_versions_refs VALUES (:id)"), {"id": gateway_id}
        )
    try:
        deleted = await client.delete(f"/api/v1/gateways/{gateway_id}", headers=tenant.headers)
        assert deleted.json()["outcome"] == "archived"
        versions = await versions_of(client, tenant, gateway_id)
        assert [v["summary"] for v in versions] == [
            "archived: payments refer to it",
            "enabled",
            "disabled",
            "created",
        ]
        last = await client.get(versions_path(gateway_id, "/4"), headers=tenant.headers)
        assert last.json()["archived"] is True
        refused = await client.post(versions_path(gateway_id, "/1/restore"), headers=tenant.headers)
        assert refused.status_code == 409, refused.text
        assert refused.json()["type"].endswith("/gateway-archived")
        assert len(await versions_of(client, tenant, gateway_id)) == 4
    finally:
        async with database.transaction() as session:
            await session.execute(text("DROP TABLE test_gateway_versions_refs"))


async def test_a_gateway_from_before_history_keeps_its_old_settings_as_version_1(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload("Old"))
    async with database.transaction() as session:
        await session.execute(
            text("DELETE FROM config_versions WHERE object_id = :id"), {"id": gateway["id"]}
        )
    await patch(client, tenant, gateway["id"], {"name": "New"})
    versions = await versions_of(client, tenant, gateway["id"])
    assert [(v["version"], v["summary"]) for v in versions] == [
        (2, "name changed"),
        (1, BASELINE),
    ]
    assert versions[1]["actor"]["type"] == "system"
    restored = await client.post(versions_path(gateway["id"], "/1/restore"), headers=tenant.headers)
    assert restored.json()["name"] == "Old"
    assert restored.json()["kept"] == []


async def test_a_refused_restore_changes_nothing(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    await patch(client, tenant, gateway["id"], {"name": "Renamed"})
    # A version whose settings no longer pass the checks (as if a currency were withdrawn).
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE config_versions SET snapshot = jsonb_set(snapshot,"
                " '{supported_currencies}', '[\"XXY\"]') WHERE object_id = :id AND version = 1"
            ),
            {"id": gateway["id"]},
        )
    refused = await client.post(versions_path(gateway["id"], "/1/restore"), headers=tenant.headers)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"] == "supported_currencies.0"
    read = (await client.get(f"/api/v1/gateways/{gateway['id']}", headers=tenant.headers)).json()
    assert read["name"] == "Renamed"
    assert len(await versions_of(client, tenant, gateway["id"])) == 2


async def test_deleting_a_gateway_deletes_its_versions(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    await patch(client, tenant, gateway["id"], {"priority": 5})
    assert len(await stored_versions(database, gateway["id"])) == 2
    deleted = await client.delete(f"/api/v1/gateways/{gateway['id']}", headers=tenant.headers)
    assert deleted.json()["outcome"] == "deleted"
    assert await stored_versions(database, gateway["id"]) == []
    gone = await client.get(versions_path(gateway["id"]), headers=tenant.headers)
    assert gone.status_code == 404
