"""An owner re-wraps the company's data keys under the new master key as a background job:
progress on the API and the page, only that company's configurations, failures loud."""

from __future__ import annotations

import json
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from sqlalchemy import select, text

from paygate.app import create_app
from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.kit.jobs_context import JobContext, set_job_context
from paygate.security.crypto import Keyring, generate_master_key
from paygate.security.tasks import rewrap_company_keys
from paygate.settings import Settings
from tests.accounts.test_members import invite_and_join
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, create_gateway, sandbox_payload, stripe_payload
from tests.security.test_key_rotation import paygate_cli
from tests.web.helpers import WebUser, csrf_of, new_client, sign_up
from tests.web.test_account_pages import accept, invite

TAMPERED = "Tampered by the key rotation test"


@dataclass
class Rotating:
    """A paygate process whose operator put a new primary master key before the old one."""

    app: Any
    client: httpx.AsyncClient
    keys: str
    keyring: Keyring
    new_key_id: str


@pytest.fixture
async def rotating(
    settings: Settings, database: Database, jobs: JobContext
) -> AsyncIterator[Rotating]:
    new_key_id = f"rot-{secrets.token_hex(3)}"
    keys = f"{generate_master_key(new_key_id)},{settings.master_keys_text()}"
    app = create_app(
        settings.model_copy(update={"master_keys": SecretStr(keys)}), database=database
    )
    keyring = Keyring.parse(keys)
    # The worker runs with the same keys as the web process.
    set_job_context(JobContext(database, settings, keyring))
    async with new_client(app) as client:
        yield Rotating(app, client, keys, keyring, new_key_id)
    # Leave no row under this test's key, and not the tampered one: the operator's CLI
    # re-wraps every company's rows, and later tests run it.
    async with database.transaction() as session:
        await session.execute(
            text("DELETE FROM gateways WHERE key_id = :key_id OR name = :tampered"),
            {"key_id": new_key_id, "tampered": TAMPERED},
        )


async def key_of(database: Database, gateway_id: str) -> str:
    async with database.transaction() as session:
        return (
            await session.execute(select(Gateway.key_id).where(Gateway.id == gateway_id))
        ).scalar_one()


async def run_deferred_job(database: Database, rotation_id: str) -> None:
    """The job was deferred in the request's transaction: find it, then run it here."""
    async with database.transaction() as session:
        row = (
            await session.execute(
                text(
                    "SELECT task_name, queue_name, args FROM procrastinate_jobs"
                    " WHERE args->>'rotation_id' = :id"
                ),
                {"id": rotation_id},
            )
        ).one()
    assert row.task_name == "security:rewrap_company_keys"
    assert row.queue_name == "maintenance"
    await rewrap_company_keys(**row.args)


async def test_owner_rewraps_only_the_company_keys_and_follows_progress(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    rotating: Rotating,
    localstripe_url: str,
) -> None:
    mine = [
        await create_gateway(client, tenant, stripe_payload(localstripe_url)),
        await create_gateway(client, tenant, stripe_payload(localstripe_url)),
    ]
    theirs = await create_gateway(client, other_tenant, stripe_payload(localstripe_url))
    api = rotating.client

    keys = (await api.get("/api/v1/security/keys", headers=tenant.headers)).json()
    assert keys["primary_key_id"] == rotating.new_key_id
    assert keys["to_rewrap"] == 2
    assert {k["key_id"]: k["configurations"] for k in keys["keys"]} == {
        rotating.new_key_id: 0,
        "test-a": 2,
    }

    started = await api.post("/api/v1/security/key-rotations", headers=tenant.headers)
    assert started.status_code == 202, started.text
    rotation = started.json()
    assert rotation["status"] == "running"
    assert (rotation["total"], rotation["done"]) == (2, 0)
    assert rotation["target_key_id"] == rotating.new_key_id

    # One run at a time.
    again = await api.post("/api/v1/security/key-rotations", headers=tenant.headers)
    assert again.status_code == 409
    assert again.headers["content-type"].startswith("application/problem+json")

    # The other company neither sees this run nor can follow it.
    hidden = await api.get(
        f"/api/v1/security/key-rotations/{rotation['id']}", headers=other_tenant.headers
    )
    assert hidden.status_code == 404

    await run_deferred_job(database, rotation["id"])

    done = (
        await api.get(f"/api/v1/security/key-rotations/{rotation['id']}", headers=tenant.headers)
    ).json()
    assert done["status"] == "finished"
    assert (done["done"], done["failed"], done["failed_gateway_ids"]) == (2, 0, [])
    assert done["finished_at"] is not None
    for gateway in mine:
        assert await key_of(database, gateway["id"]) == rotating.new_key_id
        shown = await api.get(f"/api/v1/gateways/{gateway['id']}", headers=tenant.headers)
        assert shown.json()["credentials_readable"] is True
    # Company-scoped: the other company's configuration is still under the old key.
    assert await key_of(database, theirs["id"]) == "test-a"

    actions = [e["action"] for e in await audit_entries(client, tenant, object_type="key_rotation")]
    assert actions == ["keys.rotation_finished", "keys.rotation_started"]
    assert await audit_entries(client, other_tenant, object_type="key_rotation") == []


async def test_viewers_and_admins_cannot_start_a_rewrap(
    client: httpx.AsyncClient, tenant: Tenant, rotating: Rotating
) -> None:
    await create_gateway(client, tenant, sandbox_payload())
    viewer = await invite_and_join(client, tenant, "viewer@acme-keys.example", "viewer")
    admin = await invite_and_join(client, tenant, "admin@acme-keys.example", "admin")
    for member in (viewer, admin):
        refused = await rotating.client.post(
            "/api/v1/security/key-rotations", headers=member["headers"]
        )
        assert refused.status_code == 403, refused.text
        # They may still see which key wraps the company's credentials.
        seen = await rotating.client.get("/api/v1/security/keys", headers=member["headers"])
        assert seen.status_code == 200
    assert await audit_entries(client, tenant, action="keys.rotation_started") == []


async def test_a_tampered_data_key_is_reported_and_nothing_else_is_lost(
    client: httpx.AsyncClient,
    database: Database,
    rotating: Rotating,
    localstripe_url: str,
    settings: Settings,
    database_url: str,
) -> None:
    async with new_client(rotating.app) as browser:
        owner = await sign_up(browser, "Acme Tampered")
        headers = owner.bearer
        tenant = as_tenant(owner)
        me = await client.get("/api/v1/me", headers=headers)
        tenant.company_id = me.json()["company"]["id"]
        good = [
            await create_gateway(client, tenant, stripe_payload(localstripe_url)),
            await create_gateway(client, tenant, stripe_payload(localstripe_url)),
        ]
        payload = {**stripe_payload(localstripe_url), "name": TAMPERED}
        tampered = await create_gateway(client, tenant, payload)
        async with database.transaction() as session:
            await session.execute(
                text(
                    "UPDATE gateways SET wrapped_data_key ="
                    " set_byte(wrapped_data_key, 20, get_byte(wrapped_data_key, 20) # 1)"
                    " WHERE id = :id"
                ),
                {"id": tampered["id"]},
            )

        page = await browser.get("/security/keys")
        started = await browser.post(
            "/security/keys/rotations",
            data={"csrf_token": csrf_of(page.text)},
            headers={"HX-Request": "true", "X-CSRF-Token": csrf_of(page.text)},
        )
        assert started.status_code == 200, started.text
        assert "Re-wrap started" in started.text
        rotation_id = started.text.split('data-rotation-id="', 1)[1].split('"', 1)[0]
        # While it runs, the fragment asks for itself again (htmx polling, no script).
        assert f'hx-get="/security/keys/rotations/{rotation_id}"' in started.text
        assert 'hx-trigger="every 2s"' in started.text

        await run_deferred_job(database, rotation_id)

        result = (
            await rotating.client.get(
                f"/api/v1/security/key-rotations/{rotation_id}", headers=headers
            )
        ).json()
        assert result["status"] == "failed"
        assert (result["done"], result["failed"]) == (2, 1)
        assert result["failed_gateway_ids"] == [tampered["id"]]
        assert tampered["id"] in result["detail"]

        # Nothing else is lost: the others moved to the new key and still decrypt.
        for gateway in good:
            assert await key_of(database, gateway["id"]) == rotating.new_key_id
            tested = await rotating.client.post(
                f"/api/v1/gateways/{gateway['id']}/test", headers=headers
            )
            assert tested.json()["ok"] is True, tested.json()
        assert await key_of(database, tampered["id"]) == "test-a"
        shown = await rotating.client.get(f"/api/v1/gateways/{tampered['id']}", headers=headers)
        assert shown.status_code == 200
        assert shown.json()["credentials_readable"] is False

        # Visible: a red alert on the keys page naming the configuration, a card that says
        # what to do instead of an error page, and the progress fragment stops polling.
        keys_page = (await browser.get("/security/keys")).text
        assert 'id="rotation-failures"' in keys_page
        assert tampered["id"] in keys_page
        fragment = await browser.get(
            f"/security/keys/rotations/{rotation_id}", headers={"HX-Request": "true"}
        )
        assert "hx-trigger" not in fragment.text
        assert 'data-status="failed"' in fragment.text
        gateways_page = await browser.get("/gateways")
        assert gateways_page.status_code == 200
        assert f'id="gw-{tampered["id"]}-undecryptable"' in gateways_page.text
        assert "Credentials can't be decrypted — re-enter them" in gateways_page.text
        for gateway in good:
            assert f'id="gw-{gateway["id"]}-undecryptable"' not in gateways_page.text

        # Audited for the company (ids only, no key material), and the run marked failed.
        [failure] = await audit_entries(client, tenant, action="gateway.credentials_undecryptable")
        assert failure["object_id"] == tampered["id"]
        assert failure["outcome"] == "failure"
        [run] = await audit_entries(client, tenant, action="keys.rotation_failed")
        assert run["changes"]["failed_gateway_ids"]["after"] == [tampered["id"]]
        entries = json.dumps(await audit_entries(client, tenant))
        assert rotating.keys.split(",")[0].split(":", 1)[1] not in entries

        # The operator's CLI meets the same row and exits non-zero, naming it.
        cli = paygate_cli(
            "keys",
            "rotate",
            "--company",
            tenant.company_id,
            database_url=database_url,
            master_keys=rotating.keys,
        )
        assert cli.returncode == 1, cli.stdout + cli.stderr
        assert tampered["id"] in cli.stdout
        assert "could not be decrypted" in cli.stdout


def as_tenant(owner: WebUser) -> Tenant:
    """The page user's API identity (the same access token works for the JSON API)."""
    token = owner.bearer["Authorization"].split(" ", 1)[1]
    return Tenant(owner.email, owner.password, owner.company_name, token, "")


async def test_the_keys_page_offers_the_rewrap_to_owners_only(rotating: Rotating) -> None:
    async with new_client(rotating.app) as browser:
        owner = await sign_up(browser, "Acme Keys")
        page = await browser.get("/security/keys")
        assert page.status_code == 200
        assert f'<code id="primary-key-id">{rotating.new_key_id}</code>' in page.text
        assert 'id="start-rewrap"' in page.text
        # A new company has no gateway under an older key: nothing to start.
        assert 'id="start-rewrap" disabled' in page.text
        assert "Nothing to re-wrap" in page.text
        assert "<script>" not in page.text
        assert "No re-wrap has been run yet." in page.text
        viewer = await accept(rotating.app, await invite(owner, "viewer@keys.example", "viewer"))
    try:
        seen = await viewer.client.get("/security/keys")
        assert seen.status_code == 200
        assert 'id="start-rewrap"' not in seen.text
        refused = await viewer.client.post(
            "/security/keys/rotations", data={"csrf_token": csrf_of(seen.text)}
        )
        assert refused.status_code == 403
        assert "No re-wrap has been run yet." in (await viewer.client.get("/security/keys")).text
    finally:
        await viewer.client.aclose()


async def test_nothing_to_rewrap_finishes_at_once_and_an_abandoned_run_gives_way(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, rotating: Rotating
) -> None:
    await create_gateway(client, tenant, sandbox_payload())
    # Under the process's own primary key already: nothing to wait for.
    settled = await client.post("/api/v1/security/key-rotations", headers=tenant.headers)
    assert settled.status_code == 202
    assert settled.json()["status"] == "finished"
    assert settled.json()["detail"].startswith("Nothing to re-wrap")
    async with database.transaction() as session:
        jobs = await session.execute(
            text("SELECT count(*) FROM procrastinate_jobs WHERE args->>'rotation_id' = :id"),
            {"id": settled.json()["id"]},
        )
        assert jobs.scalar_one() == 0

    # Under the new key, a run starts; its worker dies (it stops moving for 11 minutes).
    stuck = (
        await rotating.client.post("/api/v1/security/key-rotations", headers=tenant.headers)
    ).json()
    assert stuck["status"] == "running"
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE key_rotations SET progressed_at = progressed_at - interval '11 minutes'"
                " WHERE id = :id"
            ),
            {"id": stuck["id"]},
        )
    fresh = await rotating.client.post("/api/v1/security/key-rotations", headers=tenant.headers)
    assert fresh.status_code == 202, fresh.text
    old = (
        await client.get(f"/api/v1/security/key-rotations/{stuck['id']}", headers=tenant.headers)
    ).json()
    assert old["status"] == "failed"
    assert "Abandoned" in old["detail"]
    # The old job, should it run late, leaves the abandoned run alone; the new one finishes.
    await rewrap_company_keys(rotation_id=stuck["id"])
    await run_deferred_job(database, fresh.json()["id"])
    runs = {
        rid: (
            await client.get(f"/api/v1/security/key-rotations/{rid}", headers=tenant.headers)
        ).json()["status"]
        for rid in (stuck["id"], fresh.json()["id"])
    }
    assert runs == {stuck["id"]: "failed", fresh.json()["id"]: "finished"}


async def test_a_truncated_envelope_is_reported_like_any_unreadable_one(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    rotating: Rotating,
    localstripe_url: str,
) -> None:
    """Stored bytes cut short (a bad restore, a hand edit) are unreadable credentials, not a
    crash: the gateway list answers, the re-wrap reports that row and moves the others."""
    good = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    short_key = await create_gateway(
        client, tenant, {**stripe_payload(localstripe_url), "name": TAMPERED}
    )
    no_ciphertext = await create_gateway(
        client, tenant, {**stripe_payload(localstripe_url), "name": TAMPERED}
    )
    theirs = await create_gateway(client, other_tenant, stripe_payload(localstripe_url))
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE gateways SET wrapped_data_key = substring(wrapped_data_key for 4)"
                " WHERE id = :id"
            ),
            {"id": short_key["id"]},
        )
        await session.execute(
            text("UPDATE gateways SET secret_ciphertext = ''::bytea WHERE id = :id"),
            {"id": no_ciphertext["id"]},
        )

    listed = await rotating.client.get("/api/v1/gateways", headers=tenant.headers)
    assert listed.status_code == 200, listed.text
    readable = {g["id"]: g["credentials_readable"] for g in listed.json()}
    assert readable == {good["id"]: True, short_key["id"]: False, no_ciphertext["id"]: False}
    tested = await rotating.client.post(
        f"/api/v1/gateways/{short_key['id']}/test", headers=tenant.headers
    )
    assert tested.json()["ok"] is False
    assert "cannot be decrypted" in tested.json()["message"]

    started = await rotating.client.post("/api/v1/security/key-rotations", headers=tenant.headers)
    assert started.status_code == 202, started.text
    await run_deferred_job(database, started.json()["id"])
    result = (
        await rotating.client.get(
            f"/api/v1/security/key-rotations/{started.json()['id']}", headers=tenant.headers
        )
    ).json()
    assert result["status"] == "failed"
    assert result["done"] == 1
    assert sorted(result["failed_gateway_ids"]) == sorted([short_key["id"], no_ciphertext["id"]])
    assert await key_of(database, good["id"]) == rotating.new_key_id
    # The other company's row was not part of this company's run.
    assert await key_of(database, theirs["id"]) == "test-a"
