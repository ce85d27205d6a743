"""The receiving endpoint: which gateway, what is stored, rate limits on refusals, another
company's gateway id, and a canary secret that shows up nowhere."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import httpx
import psycopg
import pytest
import structlog
from procrastinate.exceptions import AlreadyEnqueued
from sqlalchemy import text

from paygate.app import create_app
from paygate.db import Database, libpq_url
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.deferral import coalesced_deferral_sql, defer_in_transaction
from paygate.settings import Settings
from paygate.webhooks.inbound.receive import RECEIVED_JOB, GatewaysAsRead
from paygate.webhooks.inbound.repository import (
    GatewayAsRead,
    Stored,
    gateway_for_webhook,
    store_verified,
)
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.gateways.helpers import create_gateway, sandbox_payload
from tests.security.test_canary import pg_dump
from tests.web.helpers import new_client
from tests.webhooks.inbound.helpers import (
    CANARY,
    Scene,
    custom_gateway,
    deliver,
    event,
    new_secret,
)


async def test_unknown_gateways_and_the_sandbox_answer_404(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    sandbox = await create_gateway(client, tenant, sandbox_payload())
    for gateway_id in ("gw_01J00000000000000000000000", sandbox["id"], "x" * 300):
        response = await deliver(client, gateway_id, b"{}", {"content-type": "application/json"})
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    # GET is not a webhook.
    assert (await client.get(f"/webhooks/{sandbox['id']}")).status_code == 405


async def test_another_companys_gateway_id_stores_under_that_company_only(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    mine = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    theirs = await custom_gateway(client, other_tenant, emulator, webhook_secret=new_secret())
    delivery = emulator.sign_event({"id": "evt_cross", "type": "ping", "data": {}})
    # Signed for this company's gateway, sent to the other company's URL: refused there.
    refused = await deliver(client, theirs["id"], delivery)
    assert refused.status_code == 400
    listed = await client.get(
        "/api/v1/webhook-events", params={"status": "rejected"}, headers=other_tenant.headers
    )
    stored_id = listed.json()["data"][0]["id"]
    assert (
        await client.get(f"/api/v1/webhook-events/{stored_id}", headers=tenant.headers)
    ).status_code == 404
    for path in (f"/api/v1/webhook-events/{stored_id}/replay",):
        assert (await client.post(path, headers=tenant.headers)).status_code == 404
    # The rejected copy did not take the event id: the real delivery is stored and verified.
    accepted = await deliver(client, mine["id"], delivery)
    assert accepted.status_code == 200
    assert accepted.json()["duplicate"] is False
    mine_listed = await client.get("/api/v1/webhook-events", headers=tenant.headers)
    assert [e["gateway_id"] for e in mine_listed.json()["data"]] == [mine["id"]]


async def test_refusals_are_rate_limited_per_gateway(
    settings: Settings,
    database: Database,
    tenant: Tenant,
    client: httpx.AsyncClient,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    other = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    tight = create_app(
        settings.model_copy(update={"rate_limit_webhook_account": "3/minute"}),
        database=database,
    )
    forged = {"webhook-id": "evt_f", "webhook-timestamp": "1", "webhook-signature": "v1,AAAA"}
    async with new_client(tight) as hostile:
        codes = [
            (await deliver(hostile, gateway["id"], b"{}", forged)).status_code for _ in range(5)
        ]
        assert codes == [400, 400, 400, 429, 429]
        over = await deliver(hostile, gateway["id"], b"{}", forged)
        assert over.headers["retry-after"]
        # Another gateway has its own budget, and valid events are never limited.
        assert (await deliver(hostile, other["id"], b"{}", forged)).status_code == 400
        valid = emulator.sign_event({"id": "evt_valid", "type": "ping", "data": {}})
        assert (await deliver(hostile, gateway["id"], valid)).status_code == 200
    rejected = await client.get(
        "/api/v1/webhook-events",
        params={"gateway_id": gateway["id"], "status": "rejected"},
        headers=tenant.headers,
    )
    assert len(rejected.json()["data"]) == 3  # past the limit nothing more is stored


async def test_headers_are_stored_with_credentials_redacted_and_the_canary_nowhere(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    database_url: str,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = CANARY
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        gateway = await custom_gateway(client, tenant, emulator, webhook_secret=CANARY)
        seen.append(json.dumps(gateway))
        nosy = {
            "authorization": f"Bearer {CANARY}",
            "x-webhook-secret": CANARY,
            "cookie": f"session={CANARY}",
            "x-request-note": "kept",
        }
        good = emulator.sign_event({"id": "evt_canary", "type": "ping", "data": {}})
        accepted = await deliver(client, gateway["id"], good, nosy)
        refused = await deliver(
            client, gateway["id"], good.body, {**nosy, "webhook-signature": "v1,AAAA"}
        )
        seen += [accepted.text, refused.text]
        listed = await client.get(
            "/api/v1/webhook-events", params={"gateway_id": gateway["id"]}, headers=tenant.headers
        )
        seen.append(listed.text)
        detail = await event(client, tenant, accepted.json()["id"])
        seen.append(json.dumps(detail))
        assert detail["headers"]["authorization"] == "[redacted]"
        assert detail["headers"]["x-webhook-secret"] == "[redacted]"
        assert detail["headers"]["cookie"] == "[redacted]"
        assert detail["headers"]["x-request-note"] == "kept"
        assert detail["headers"]["webhook-signature"] == good.headers["webhook-signature"]
        replayed = await client.post(
            f"/api/v1/webhook-events/{accepted.json()['id']}/replay", headers=tenant.headers
        )
        seen.append(replayed.text)
        seen.append(
            (
                await client.get("/api/v1/audit-log", params={"limit": 200}, headers=tenant.headers)
            ).text
        )
    out, err = capfd.readouterr()
    haystacks = {
        "responses": "\n".join(seen),
        "structlog": repr(events),
        "stdlib logs": caplog.text,
        "stdout/stderr": out + err,
        "database dump": pg_dump(database_url),
    }
    for where, haystack in haystacks.items():
        assert CANARY not in haystack, f"the canary leaked into {where}"
        assert CANARY.encode().hex() not in haystack, f"the canary leaked (hex) into {where}"


async def test_the_received_events_job_is_the_one_procrastinate_defers_and_one_waits(
    database: Database,
) -> None:
    """The receiver inserts the job in its store statement: the row procrastinate's own
    defer writes, under the queueing lock procrastinate keeps one of."""
    items, params = coalesced_deferral_sql(RECEIVED_JOB, source="one")
    statement = f"WITH one AS (SELECT 1), {items} SELECT (SELECT id FROM woken)"
    lock = RECEIVED_JOB.queueing_lock
    columns = (
        "queue_name, task_name, priority, lock, queueing_lock, args, scheduled_at, status, attempts"
    )
    async with database.sessions() as session:
        await session.execute(
            text("DELETE FROM procrastinate_jobs WHERE queueing_lock = :lock"), {"lock": lock}
        )
        ours = (await session.execute(text(statement), params)).scalar_one()
        # One waits: waking it again inserts nothing, and procrastinate refuses another.
        assert (await session.execute(text(statement), params)).scalar_one() is None
        with pytest.raises(AlreadyEnqueued):
            async with session.begin_nested():
                await defer_in_transaction(
                    session, RECEIVED_JOB.task_name, queue=RECEIVED_JOB.queue, queueing_lock=lock
                )
        our_row = (
            await session.execute(
                text(f"DELETE FROM procrastinate_jobs WHERE id = :id RETURNING {columns}"),
                {"id": ours},
            )
        ).one()
        theirs = await defer_in_transaction(
            session, RECEIVED_JOB.task_name, queue=RECEIVED_JOB.queue, queueing_lock=lock
        )
        their_row = (
            await session.execute(
                text(f"SELECT {columns} FROM procrastinate_jobs WHERE id = :id"), {"id": theirs}
            )
        ).one()
        await session.rollback()
    assert our_row == their_row


async def test_a_received_webhooks_job_wakes_no_one_and_other_jobs_still_do(
    scene: Scene,
) -> None:
    """PostgreSQL serializes the commits of transactions that NOTIFY, so a received
    webhook's job is inserted without one (the worker polls for those); every other job
    still announces itself."""
    database = scene.database
    listener = await psycopg.AsyncConnection.connect(libpq_url(database.url), autocommit=True)
    async with listener:
        await listener.execute("LISTEN procrastinate_any_queue_v1")
        scene.emulator.settle(scene.reference, "succeeded")
        received = await scene.deliver(scene.emulator.outbox[-1])
        assert received.status_code == 200, received.text
        async with database.transaction() as session:
            other = await defer_in_transaction(
                session, "webhooks_inbound:sweep_webhook_events", queue="other", timestamp=0
            )
            received_job = (
                await session.execute(
                    text(
                        "SELECT id FROM procrastinate_jobs WHERE task_name = :task"
                        " AND status = 'todo'"
                    ),
                    {"task": RECEIVED_JOB.task_name},
                )
            ).scalar_one()
        announced = [
            json.loads(n.payload)["job_id"]
            async for n in listener.notifies(timeout=1.0)
            if json.loads(n.payload).get("type") == "job_inserted"
        ]
    async with database.transaction() as session:
        await session.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": other})
    assert other in announced
    assert received_job not in announced
    # Processed all the same, as the worker would once it looks.
    assert await scene.process() == ["processed"]


async def test_a_duplicate_racing_the_first_copy_answers_with_its_id(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    gateway = await custom_gateway(client, tenant, custom_gateway_emulator, webhook_secret=None)

    def row(event_id: str) -> dict[str, object]:
        return {
            "id": event_id,
            "company_id": tenant.company_id,
            "gateway_id": gateway["id"],
            "provider": "custom",
            "provider_event_id": "evt_raced",
            "event_type": "ping",
            "occurred_at": None,
            "received_at": utcnow(),
            "body": b"{}",
            "headers": {},
            "verified": True,
            "verification": "test",
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": None,
        }

    async with database.autocommit() as session:
        read = await gateway_for_webhook(session, gateway["id"])
        assert read is not None
    async with database.transaction() as first:
        assert await store_verified(first, row("evt_first"), read.version, RECEIVED_JOB) == Stored(
            "evt_first", duplicate=False
        )

        async def second() -> Stored | None:
            async with database.autocommit() as session:
                return await store_verified(session, row("evt_second"), read.version, RECEIVED_JOB)

        racing = asyncio.create_task(second())
        # The second copy waits on the unique index until the first commits; its statement's
        # snapshot then predates the first copy, which is read again after it.
        async with database.autocommit() as watcher:
            for _ in range(500):
                waiting = await watcher.execute(
                    text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND query LIKE 'WITH current_gateway AS%'"
                    )
                )
                if waiting.scalar_one():
                    break
                await asyncio.sleep(0.02)
            else:
                pytest.fail("the second copy never waited for the first")
    assert await racing == Stored("evt_first", duplicate=True)
    async with database.transaction() as session:
        stored = await session.execute(
            text("SELECT id FROM webhook_events WHERE provider_event_id = 'evt_raced'")
        )
        assert stored.scalars().all() == ["evt_first"]


def test_the_receivers_kept_gateways_are_bounded_in_number_and_age() -> None:
    def read(gateway_id: str) -> GatewayAsRead:
        return GatewayAsRead(Gateway(id=gateway_id), version="1")

    kept = GatewaysAsRead(size=2)
    for gateway_id in ("gw_a", "gw_b", "gw_c"):
        kept.keep(read(gateway_id))
    assert [kept.get(g) is not None for g in ("gw_a", "gw_b", "gw_c")] == [False, True, True]
    kept.forget("gw_b")
    assert kept.get("gw_b") is None
    expired = GatewaysAsRead(max_age=0.0)
    expired.keep(read("gw_a"))
    time.sleep(0.01)
    assert expired.get("gw_a") is None
