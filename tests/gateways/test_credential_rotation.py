"""Replacing a gateway secret: the old one stays accepted for its grace, then it is gone."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import ROLE_PERMISSIONS, Role
from paygate.db import Database
from paygate.gateways.credentials import (
    Envelope,
    open_envelope,
    secrets_for_verification,
)
from paygate.gateways.models import Gateway
from paygate.gateways.resealing import wipe_expired_previous_credentials
from paygate.gateways.schemas import GatewayUpdate
from paygate.gateways.service import GatewayService
from paygate.kit.clock import utcnow
from paygate.kit.deps import Origin
from paygate.security.crypto import Keyring, KeyringError, generate_master_key
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, create_gateway, stripe_payload

OLD_WEBHOOK_SECRET = "whsec_" + "a" * 32
NEW_WEBHOOK_SECRET = "whsec_" + "N3wS1gn1ngS3cr3tV4lu3xyzQRST"


@pytest.fixture
def keyring(settings: Settings) -> Keyring:
    return Keyring.parse(settings.master_keys_text())


async def stored(database: Database, gateway_id: str) -> Gateway:
    async with database.transaction() as session:
        gateway = (
            await session.execute(select(Gateway).where(Gateway.id == gateway_id))
        ).scalar_one()
        session.expunge(gateway)
        return gateway


async def end_grace_in_the_db(database: Database, gateway_id: str, field: str) -> datetime:
    """Move the previous secret's grace into the past, as time would."""
    ended = utcnow() - timedelta(minutes=1)
    async with database.transaction() as session:
        gateway = (
            await session.execute(select(Gateway).where(Gateway.id == gateway_id).with_for_update())
        ).scalar_one()
        hints = {name: dict(hint) for name, hint in gateway.secret_hints.items()}
        hints[field]["previous_valid_until"] = ended.isoformat()
        gateway.secret_hints = hints
        gateway.previous_credentials_expire_at = ended
    return ended


async def replace_webhook_secret(
    client: httpx.AsyncClient, tenant: Tenant, gateway_id: str, **extra: Any
) -> httpx.Response:
    return await client.patch(
        f"/api/v1/gateways/{gateway_id}",
        json={"configuration": {"webhook_secret": NEW_WEBHOOK_SECRET}, **extra},
        headers=tenant.headers,
    )


async def test_old_and_new_secret_verify_during_grace_then_only_the_new_one(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    keyring: Keyring,
    localstripe_url: str,
) -> None:
    mine = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    theirs = await create_gateway(client, other_tenant, stripe_payload(localstripe_url))
    assert mine["credentials"]["webhook_secret"]["previous_valid_until"] is None

    replaced = await replace_webhook_secret(client, tenant, mine["id"])
    assert replaced.status_code == 200, replaced.text
    shown = (await client.get(f"/api/v1/gateways/{mine['id']}", headers=tenant.headers)).json()
    credential = shown["credentials"]["webhook_secret"]
    changed_at = datetime.fromisoformat(credential["changed_at"])
    until = datetime.fromisoformat(credential["previous_valid_until"])
    assert until - changed_at == timedelta(hours=24)  # the default grace
    assert credential["masked"].endswith("QRST")
    # The secret key was not replaced: it has no previous one.
    assert shown["credentials"]["secret_key"]["previous_valid_until"] is None
    assert shown["credentials_readable"] is True
    assert NEW_WEBHOOK_SECRET not in replaced.text
    assert OLD_WEBHOOK_SECRET not in replaced.text

    gateway = await stored(database, mine["id"])
    during = changed_at + timedelta(hours=23)
    assert secrets_for_verification(gateway, keyring, "webhook_secret", during) == [
        NEW_WEBHOOK_SECRET,
        OLD_WEBHOOK_SECRET,
    ]
    after = until + timedelta(seconds=1)
    assert secrets_for_verification(gateway, keyring, "webhook_secret", after) == [
        NEW_WEBHOOK_SECRET
    ]
    # The adapters only ever see the current secrets.
    assert "previous:webhook_secret" not in json.dumps(
        secrets_for_verification(gateway, keyring, "secret_key", during)
    )

    # The grace ends; the sweeper wipes the old secret from storage, for this company only.
    await end_grace_in_the_db(database, mine["id"], "webhook_secret")
    assert await wipe_expired_previous_credentials(database, keyring) >= 1
    gateway = await stored(database, mine["id"])
    assert open_envelope(gateway, keyring).previous == {}
    assert open_envelope(gateway, keyring).current["webhook_secret"] == NEW_WEBHOOK_SECRET
    assert gateway.previous_credentials_expire_at is None
    assert secrets_for_verification(gateway, keyring, "webhook_secret", utcnow()) == [
        NEW_WEBHOOK_SECRET
    ]
    shown = (await client.get(f"/api/v1/gateways/{mine['id']}", headers=tenant.headers)).json()
    assert shown["credentials"]["webhook_secret"]["previous_valid_until"] is None
    wiped = await audit_entries(
        client, tenant, object_id=mine["id"], action="gateway.previous_credentials_wiped"
    )
    assert [entry["actor_type"] for entry in wiped] == ["system"]

    their_gateway = await stored(database, theirs["id"])
    assert open_envelope(their_gateway, keyring).current["webhook_secret"] == OLD_WEBHOOK_SECRET
    assert (
        await audit_entries(client, other_tenant, action="gateway.previous_credentials_wiped") == []
    )


async def test_rotation_is_audited_without_values(
    client: httpx.AsyncClient, tenant: Tenant, localstripe_url: str
) -> None:
    gateway = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    await replace_webhook_secret(client, tenant, gateway["id"], previous_secret_grace_hours=2)

    [entry] = await audit_entries(
        client, tenant, object_id=gateway["id"], action="gateway.credentials_rotated"
    )
    assert entry["changes"]["configuration.webhook_secret"] == {
        "before": "[changed]",
        "after": "[changed]",
    }
    grace = entry["changes"]["previous_credentials.webhook_secret"]
    assert grace["before"] is None
    assert "accepted until" in entry["detail"]
    everything = json.dumps(await audit_entries(client, tenant, object_id=gateway["id"]))
    assert NEW_WEBHOOK_SECRET not in everything
    assert OLD_WEBHOOK_SECRET not in everything
    assert "N3wS1gn1ng" not in everything


async def test_grace_is_chosen_per_change_zero_drops_the_old_secret_at_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    keyring: Keyring,
    localstripe_url: str,
) -> None:
    gateway = await create_gateway(client, tenant, stripe_payload(localstripe_url))

    too_long = await replace_webhook_secret(
        client, tenant, gateway["id"], previous_secret_grace_hours=169
    )
    assert too_long.status_code == 422
    assert too_long.headers["content-type"].startswith("application/problem+json")
    unchanged = await stored(database, gateway["id"])
    assert open_envelope(unchanged, keyring).current["webhook_secret"] == OLD_WEBHOOK_SECRET

    two_hours = await replace_webhook_secret(
        client, tenant, gateway["id"], previous_secret_grace_hours=2
    )
    credential = two_hours.json()["credentials"]["webhook_secret"]
    assert datetime.fromisoformat(credential["previous_valid_until"]) - datetime.fromisoformat(
        credential["changed_at"]
    ) == timedelta(hours=2)

    leaked = await client.patch(
        f"/api/v1/gateways/{gateway['id']}",
        json={
            "configuration": {"webhook_secret": "whsec_" + "L" * 32},
            "previous_secret_grace_hours": 0,
        },
        headers=tenant.headers,
    )
    assert leaked.json()["credentials"]["webhook_secret"]["previous_valid_until"] is None
    row = await stored(database, gateway["id"])
    assert open_envelope(row, keyring).previous == {}
    assert secrets_for_verification(row, keyring, "webhook_secret", utcnow()) == [
        "whsec_" + "L" * 32
    ]


async def test_an_expired_previous_secret_is_wiped_by_the_next_write(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    keyring: Keyring,
    localstripe_url: str,
) -> None:
    gateway = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    await replace_webhook_secret(client, tenant, gateway["id"])
    assert open_envelope(await stored(database, gateway["id"]), keyring).previous == {
        "webhook_secret": OLD_WEBHOOK_SECRET
    }

    # Still in grace: an unrelated change keeps it.
    await client.patch(
        f"/api/v1/gateways/{gateway['id']}", json={"priority": 5}, headers=tenant.headers
    )
    assert open_envelope(await stored(database, gateway["id"]), keyring).previous == {
        "webhook_secret": OLD_WEBHOOK_SECRET
    }

    await end_grace_in_the_db(database, gateway["id"], "webhook_secret")
    renamed = await client.patch(
        f"/api/v1/gateways/{gateway['id']}", json={"name": "Renamed"}, headers=tenant.headers
    )
    assert renamed.json()["credentials"]["webhook_secret"]["previous_valid_until"] is None
    row = await stored(database, gateway["id"])
    assert open_envelope(row, keyring).previous == {}
    assert row.previous_credentials_expire_at is None


def test_secrets_for_verification_follows_the_grace_to_the_second() -> None:
    keyring = Keyring.parse(generate_master_key("unit"))
    changed = datetime.fromisoformat("2026-11-20T10:00:00+00:00")
    until = changed + timedelta(hours=24)
    gateway = Gateway(id="gw_unit", company_id="co_unit", key_id="unit")
    sealed = keyring.seal(
        Envelope({"webhook_secret": "new"}, {"webhook_secret": "old"}).plaintext(), gateway.aad()
    )
    gateway.key_id = sealed.key_id
    gateway.wrapped_data_key = sealed.wrapped_data_key
    gateway.secret_ciphertext = sealed.ciphertext
    gateway.secret_hints = {
        "webhook_secret": {
            "masked": "whsec_...",
            "changed_at": changed.isoformat(),
            "previous_valid_until": until.isoformat(),
        }
    }

    assert secrets_for_verification(gateway, keyring, "webhook_secret", changed) == ["new", "old"]
    before_end = until - timedelta(seconds=1)
    assert secrets_for_verification(gateway, keyring, "webhook_secret", before_end) == [
        "new",
        "old",
    ]
    assert secrets_for_verification(gateway, keyring, "webhook_secret", until) == ["new"]
    assert secrets_for_verification(gateway, keyring, "secret_key", changed) == []

    # Bound to its company and configuration: copied onto another row, it does not open.
    moved = Gateway(
        id="gw_other",
        company_id="co_unit",
        key_id=gateway.key_id,
        wrapped_data_key=gateway.wrapped_data_key,
        secret_ciphertext=gateway.secret_ciphertext,
        secret_hints=gateway.secret_hints,
    )
    with pytest.raises(KeyringError):
        secrets_for_verification(moved, keyring, "webhook_secret", changed)


LEAKED_SECRET_KEY = "sk_test_" + "4eC39HqLyjWDarjtT1zdp7dc4242"
REPLACEMENT_SECRET_KEY = "sk_test_" + "R3pl4c3dAft3rTh3L34kZZ9999"


async def test_an_edit_that_read_the_gateway_before_a_concurrent_rotation_keeps_the_rotation(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    keyring: Keyring,
    settings: Settings,
    localstripe_url: str,
) -> None:
    """The edit page reads the gateway, then updates it under a row lock. If another admin
    replaced a leaked secret (grace 0) in between, the update must start from the locked
    row, not from what it read first: otherwise the leaked secret comes back."""
    mine = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    theirs = await create_gateway(client, other_tenant, stripe_payload(localstripe_url))
    editor = AuthContext(
        company_id=tenant.company_id,
        actor_type="user",
        actor_id=tenant.user_id,
        actor_label=tenant.email,
        permissions=ROLE_PERMISSIONS[Role.OWNER],
        origin=Origin(ip="198.51.100.7", user_agent="edit page", request_id=None),
        role=Role.OWNER,
        user_id=tenant.user_id,
    )
    async with database.transaction() as session:
        service = GatewayService(session, keyring, settings, editor)
        # What update_gateway in web/gateway_pages.py does first (and keeps the object).
        read_first = await service.get(mine["id"])

        rotated = await client.patch(
            f"/api/v1/gateways/{mine['id']}",
            json={
                "configuration": {"secret_key": REPLACEMENT_SECRET_KEY},
                "previous_secret_grace_hours": 0,
            },
            headers=tenant.headers,
        )
        assert rotated.status_code == 200, rotated.text

        updated = await service.update(mine["id"], GatewayUpdate(name="Renamed on the page"))
        assert updated is read_first  # one object per row in a session

    envelope = open_envelope(await stored(database, mine["id"]), keyring)
    assert envelope.current["secret_key"] == REPLACEMENT_SECRET_KEY
    assert LEAKED_SECRET_KEY not in envelope.previous.values()
    shown = (await client.get(f"/api/v1/gateways/{mine['id']}", headers=tenant.headers)).json()
    assert shown["name"] == "Renamed on the page"
    assert shown["configuration"]["secret_key"] == "sk_test_...9999"
    assert shown["credentials"]["secret_key"]["previous_valid_until"] is None
    # The other company's gateway still has its own secret.
    assert (
        open_envelope(await stored(database, theirs["id"]), keyring).current["secret_key"]
        == LEAKED_SECRET_KEY
    )
