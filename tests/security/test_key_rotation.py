"""Rotating the master key: configurations written under key A stay readable under key B alone."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from paygate.app import create_app
from paygate.db import Database
from paygate.security.crypto import generate_master_key
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway, stripe_payload


def paygate_cli(
    *args: str, database_url: str, master_keys: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PAYGATE_DATABASE_URL": database_url,
        "PAYGATE_MASTER_KEYS": master_keys,
        "PAYGATE_MODE": "test",
        "COLUMNS": "120",
    }
    return subprocess.run(
        [sys.executable, "-c", "from paygate.cli import main; main()", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture
async def client_with_keys(settings: Settings, database: Database) -> Any:
    """A client for a paygate process started with other master keys."""
    clients: list[httpx.AsyncClient] = []

    def make(keys: str) -> httpx.AsyncClient:
        app = create_app(
            settings.model_copy(update={"master_keys": SecretStr(keys)}), database=database
        )
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://paygate.test"
        )
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.aclose()


async def test_rotate_to_a_new_key_then_retire_the_old_one(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    master_keys: str,
    database_url: str,
    localstripe_url: str,
    client_with_keys: Any,
) -> None:
    key_a = master_keys
    key_b = generate_master_key("test-b")
    mine = await create_gateway(client, tenant, stripe_payload(localstripe_url))
    theirs = await create_gateway(client, other_tenant, stripe_payload(localstripe_url))
    # A webhook endpoint's signing secret is sealed under the master key too.
    endpoint = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": "http://127.0.0.1:9/hooks", "event_types": ["invoice.paid"]},
        headers=tenant.headers,
    )
    assert endpoint.status_code == 201, endpoint.text

    status = paygate_cli(
        "keys", "status", database_url=database_url, master_keys=f"{key_b},{key_a}"
    )
    assert status.returncode == 0, status.stderr
    assert "webhook endpoints" in status.stdout
    row_a = next(line for line in status.stdout.splitlines() if "test-a" in line)
    assert "configured" in row_a
    assert "can be retired" not in row_a
    assert "primary" in status.stdout

    rotated = paygate_cli(
        "keys", "rotate", database_url=database_url, master_keys=f"{key_b},{key_a}"
    )
    assert rotated.returncode == 0, rotated.stdout + rotated.stderr
    assert "Every configuration is wrapped by test-b" in rotated.stdout

    status = paygate_cli("keys", "status", database_url=database_url, master_keys=key_b)
    assert "test-a" not in status.stdout  # neither a gateway nor an endpoint needs it

    # A process that knows only key B reads, tests and updates both companies' gateways.
    only_b = client_with_keys(key_b)
    for owner, gateway in ((tenant, mine), (other_tenant, theirs)):
        tested = await only_b.post(f"/api/v1/gateways/{gateway['id']}/test", headers=owner.headers)
        assert tested.json()["ok"] is True, tested.json()
        renamed = await only_b.patch(
            f"/api/v1/gateways/{gateway['id']}", json={"name": "Renamed"}, headers=owner.headers
        )
        assert renamed.json()["configuration"]["secret_key"] == "sk_test_...4242"

    # And a process that knows only the retired key A can no longer open them, and says so.
    only_a = client_with_keys(key_a)
    stale = await only_a.post(f"/api/v1/gateways/{mine['id']}/test", headers=tenant.headers)
    assert stale.json()["ok"] is False
    assert "cannot be decrypted" in stale.json()["message"]
    # Re-entering the secrets there works: nothing else is lost.
    payload = stripe_payload(localstripe_url)
    reentered = await only_a.patch(
        f"/api/v1/gateways/{mine['id']}",
        json={"configuration": payload["configuration"]},
        headers=tenant.headers,
    )
    assert reentered.status_code == 200, reentered.text
    assert reentered.json()["name"] == "Renamed"
