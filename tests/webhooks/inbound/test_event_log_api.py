"""The event log API: filters, cursor paging, one event with its history, replay and bulk
replay with progress; tenant-scoped, permission-checked, bad input refused."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from paygate.webhooks.inbound import replay
from paygate.webhooks.inbound.processing import ProcessingContext
from paygate.webhooks.inbound.replay import run_bulk_replay
from tests.accounts.test_members import invite_and_join
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.webhooks.inbound.helpers import (
    custom_gateway,
    deliver,
    new_secret,
    run_webhook_jobs,
)


@pytest.fixture
async def log(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> tuple[CustomGatewayEmulator, dict[str, Any], dict[str, Any]]:
    """Two gateways of this company, seven events of two types, one refused."""
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    first = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    second = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    for number in range(5):
        ping = {"id": f"evt_log_{number}", "type": "ping", "data": {}}
        assert (await deliver(client, first["id"], emulator.sign_event(ping))).status_code == 200
    other = {"id": "evt_log_other", "type": "account.updated", "data": {}}
    await deliver(client, second["id"], emulator.sign_event(other))
    await deliver(client, first["id"], b"{}", {"webhook-signature": "v1,AAAA"})
    return emulator, first, second


async def _page(client: httpx.AsyncClient, tenant: Tenant, **params: Any) -> dict[str, Any]:
    response = await client.get("/api/v1/webhook-events", params=params, headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_filters_and_cursor_paging(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, log: Any
) -> None:
    _, first, second = log
    everything = await _page(client, tenant, limit=200)
    assert len(everything["data"]) == 7
    assert (await _page(client, other_tenant))["data"] == []
    assert len((await _page(client, tenant, gateway_id=second["id"]))["data"]) == 1
    assert len((await _page(client, tenant, type="ping"))["data"]) == 5
    assert len((await _page(client, tenant, status="rejected"))["data"]) == 1
    assert len((await _page(client, tenant, status="pending"))["data"]) == 6
    newest = everything["data"][0]["received_at"]
    since = await _page(client, tenant, received_from=newest)
    assert [e["id"] for e in since["data"]] == [everything["data"][0]["id"]]
    before = await _page(client, tenant, received_to=newest)
    assert len(before["data"]) == 6
    future = (datetime.now(UTC) + timedelta(days=1)).isoformat()
    assert (await _page(client, tenant, received_from=future))["data"] == []
    # Cursor paging: newest first, every event once.
    seen: list[str] = []
    cursor = None
    while True:
        page = await _page(client, tenant, limit=3, **({"cursor": cursor} if cursor else {}))
        seen += [e["id"] for e in page["data"]]
        if not page["has_more"]:
            break
        cursor = page["next_cursor"]
    assert seen == [e["id"] for e in everything["data"]]
    assert first["id"] in {e["gateway_id"] for e in everything["data"]}


@pytest.mark.parametrize(
    "params",
    [
        {"status": "nonsense"},
        {"limit": 0},
        {"limit": 100_000},
        {"received_from": "yesterday"},
        {"type": "x" * 101},
        {"cursor": "c" * 65},
    ],
)
async def test_bad_filters_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, params: dict[str, Any]
) -> None:
    response = await client.get("/api/v1/webhook-events", params=params, headers=tenant.headers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_one_event_replay_and_permissions(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    log: Any,
    database: Database,
    jobs: JobContext,
) -> None:
    _, first, _ = log
    events = (await _page(client, tenant, gateway_id=first["id"]))["data"]
    rejected = next(e for e in events if e["status"] == "rejected")
    pending = next(e for e in events if e["status"] == "pending")
    await run_webhook_jobs(database, jobs)
    detail = (
        await client.get(f"/api/v1/webhook-events/{pending['id']}", headers=tenant.headers)
    ).json()
    assert detail["status"] == "ignored"
    assert detail["body"].startswith("{")
    assert detail["history"][0]["trigger"] == "received"
    # Replays: a refused event stays refused (409, changes nothing); another company 404.
    refused = await client.post(
        f"/api/v1/webhook-events/{rejected['id']}/replay", headers=tenant.headers
    )
    assert refused.status_code == 409
    assert refused.json()["type"].endswith("/webhook-replay-refused")
    for method, path in (
        ("GET", f"/api/v1/webhook-events/{pending['id']}"),
        ("POST", f"/api/v1/webhook-events/{pending['id']}/replay"),
    ):
        answer = await client.request(method, path, headers=other_tenant.headers)
        assert answer.status_code == 404, (path, answer.text)
    missing = await client.get("/api/v1/webhook-events/evt_nope", headers=tenant.headers)
    assert missing.status_code == 404
    replayed = await client.post(
        f"/api/v1/webhook-events/{pending['id']}/replay", headers=tenant.headers
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json()["status"] == "pending"
    await run_webhook_jobs(database, jobs)
    again = (
        await client.get(f"/api/v1/webhook-events/{pending['id']}", headers=tenant.headers)
    ).json()
    assert [a["trigger"] for a in again["history"]] == ["received", "replay"]
    assert again["history"][1]["actor"] == tenant.email
    audit = await client.get(
        "/api/v1/audit-log", params={"action": "webhook_event.replayed"}, headers=tenant.headers
    )
    assert [e["object_id"] for e in audit.json()["data"]] == [pending["id"]]
    # A viewer reads the log but may not replay.
    viewer = await invite_and_join(client, tenant, f"viewer-{pending['id']}@example.com", "viewer")
    assert (
        await client.get("/api/v1/webhook-events", headers=viewer["headers"])
    ).status_code == 200
    denied = await client.post(
        f"/api/v1/webhook-events/{pending['id']}/replay", headers=viewer["headers"]
    )
    assert denied.status_code == 403


async def test_bulk_replay_of_failed_events_reports_progress(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    log: Any,
    database: Database,
    jobs: JobContext,
) -> None:
    _, first, _ = log
    await run_webhook_jobs(database, jobs)
    # Make the five pings of the first gateway failed, as after their last retry.
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE webhook_events SET status = 'failed', attempts = 6 "
                "WHERE gateway_id = :g AND verified"
            ),
            {"g": first["id"]},
        )
    start = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    end = (datetime.now(UTC) + timedelta(minutes=1)).isoformat()
    body = {"received_from": start, "received_to": end, "gateway_id": first["id"]}
    started = await client.post(
        "/api/v1/webhook-events/bulk-replays", json=body, headers=tenant.headers
    )
    assert started.status_code == 202, started.text
    run = started.json()
    assert (run["status"], run["total"], run["done"]) == ("running", 5, 0)
    busy = await client.post(
        "/api/v1/webhook-events/bulk-replays", json=body, headers=tenant.headers
    )
    assert busy.status_code == 409
    path = f"/api/v1/webhook-events/bulk-replays/{run['id']}"
    assert (await client.get(path, headers=other_tenant.headers)).status_code == 404

    original, replay.BATCH = replay.BATCH, 2
    try:
        await run_bulk_replay(
            ProcessingContext(jobs.database, jobs.keyring, jobs.settings), run["id"]
        )
    finally:
        replay.BATCH = original
    done = (await client.get(path, headers=tenant.headers)).json()
    assert (done["status"], done["done"], done["failed"]) == ("finished", 5, 0)
    assert (await _page(client, tenant, status="failed"))["data"] == []
    ignored = await _page(client, tenant, status="ignored", gateway_id=first["id"])
    assert {e["attempts"] for e in ignored["data"]} == {7}
    # Nothing failed left: a new run finishes at once.
    empty = await client.post(
        "/api/v1/webhook-events/bulk-replays", json=body, headers=tenant.headers
    )
    assert empty.json()["status"] == "finished"
    assert empty.json()["total"] == 0


@pytest.mark.parametrize(
    "body",
    [
        {"received_from": "2025-01-02T00:00:00Z", "received_to": "2025-01-01T00:00:00Z"},
        {"received_from": "2025-01-01T00:00:00Z", "received_to": "2025-12-01T00:00:00Z"},
        {"received_from": "2025-01-01T00:00:00", "received_to": "2025-01-02T00:00:00"},
        {"received_from": "2025-01-01T00:00:00Z"},
        {"received_from": "2025-01-01T00:00:00Z", "received_to": "x", "extra": 1},
    ],
)
async def test_bad_bulk_replays_are_refused(
    client: httpx.AsyncClient, tenant: Tenant, body: dict[str, Any]
) -> None:
    response = await client.post(
        "/api/v1/webhook-events/bulk-replays", json=body, headers=tenant.headers
    )
    assert response.status_code == 422, response.text


async def test_bulk_replay_of_another_companys_gateway_is_404(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, log: Any
) -> None:
    _, first, _ = log
    body = {
        "received_from": "2025-01-01T00:00:00Z",
        "received_to": "2025-01-02T00:00:00Z",
        "gateway_id": first["id"],
    }
    response = await client.post(
        "/api/v1/webhook-events/bulk-replays", json=body, headers=other_tenant.headers
    )
    assert response.status_code == 404
