"""Processing received events through the one settle path (custom gateway emulator):
duplicates once, out of order never backwards, mismatches to review, unknown objects
kept as unmatched, refunds paygate made and ones the gateway made, disputes, and retries
with backoff until failed."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.payments.gateway_reports import DisputeStatus, dispute_marks
from paygate.webhooks.inbound.models import WebhookEvent
from paygate.webhooks.inbound.processing import MAX_ATTEMPTS
from paygate.webhooks.inbound.tasks import sweep_due_events
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.webhooks.inbound.helpers import (
    custom_gateway,
    deliver,
    event,
    new_secret,
    payment_of,
    processing_payment,
    run_webhook_jobs,
)

Setup = tuple[CustomGatewayEmulator, dict[str, Any], dict[str, Any], str]


@pytest.fixture
async def setup(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> Setup:
    emulator = custom_gateway_emulator
    emulator.webhook_secret = new_secret()
    gateway = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    payment = await processing_payment(client, tenant, gateway["id"])
    reference = next(
        p["id"] for p in emulator.state.payments.values() if p["reference"] == payment["id"]
    )
    return emulator, gateway, payment, reference


async def _stored_count(database: Database, gateway_id: str) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).where(WebhookEvent.gateway_id == gateway_id)
        return int((await session.execute(statement)).scalar_one())


async def test_duplicates_even_concurrent_are_stored_and_processed_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    emulator.settle(reference, "succeeded")
    delivery = emulator.outbox[-1]
    answers = await asyncio.gather(*(deliver(client, gateway["id"], delivery) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 5
    # A retry later, re-signed with a fresh timestamp, is the same event.
    again = emulator.sign_event(delivery.event)
    assert (await deliver(client, gateway["id"], again)).json() == {
        "received": True,
        "id": ids.pop(),
        "duplicate": True,
    }
    assert await _stored_count(database, gateway["id"]) == 1
    assert await run_webhook_jobs(database, jobs) == ["processed"]
    after = await payment_of(client, tenant, payment["id"])
    assert after["status"] == "succeeded"
    assert [e["to_status"] for e in after["events"]].count("succeeded") == 1


async def test_out_of_order_events_never_move_a_payment_backwards(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    processing = emulator.sign_event(
        {
            "id": "evt_early_processing",
            "type": "payment.processing",
            "created_at": "2025-01-31T12:00:00Z",
            "data": {**emulator.state.payments[reference], "status": "processing"},
        }
    )
    emulator.settle(reference, "succeeded")
    # The later event arrives first ...
    assert (await deliver(client, gateway["id"], emulator.outbox[-1])).status_code == 200
    await run_webhook_jobs(database, jobs)
    # ... then the earlier one, and a contradicting failure.
    failed = copy.deepcopy(emulator.outbox[-1].event)
    failed |= {"id": "evt_late_failed", "type": "payment.failed"}
    failed["data"] |= {"status": "failed", "decline_code": "card_declined"}
    for late in (processing, emulator.sign_event(failed)):
        assert (await deliver(client, gateway["id"], late)).status_code == 200
    assert await run_webhook_jobs(database, jobs) == ["processed", "processed"]
    assert (await payment_of(client, tenant, payment["id"]))["status"] == "succeeded"


async def test_an_amount_or_currency_mismatch_goes_to_review(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    emulator.settle(reference, "succeeded")
    mismatched = copy.deepcopy(emulator.outbox[-1].event)
    mismatched["data"]["amount"] = payment["amount"] - 100
    response = await deliver(client, gateway["id"], emulator.sign_event(mismatched))
    await run_webhook_jobs(database, jobs)
    after = await payment_of(client, tenant, payment["id"])
    assert after["status"] == "requires_review"
    assert "12400" in (after["review_reason"] or "")
    assert (await event(client, tenant, response.json()["id"]))["status"] == "processed"


async def test_events_about_unknown_objects_are_kept_as_unmatched(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, _reference = setup
    stranger = {
        "id": "evt_stranger",
        "type": "payment.succeeded",
        "created_at": "2025-01-31T12:00:00Z",
        "data": {"id": "pay_unknown", "status": "succeeded", "amount": 5, "currency": "USD"},
    }
    response = await deliver(client, gateway["id"], emulator.sign_event(stranger))
    assert await run_webhook_jobs(database, jobs) == ["unmatched"]
    seen = await event(client, tenant, response.json()["id"])
    assert seen["status"] == "unmatched"
    assert "pay_unknown" in seen["outcome"]
    ignored = {**stranger, "id": "evt_other_type", "type": "account.updated"}
    await deliver(client, gateway["id"], emulator.sign_event(ignored))
    assert await run_webhook_jobs(database, jobs) == ["ignored"]
    assert (await payment_of(client, tenant, payment["id"]))["status"] == "processing"


async def _succeed(
    client: httpx.AsyncClient, setup: Setup, database: Database, jobs: JobContext
) -> None:
    emulator, gateway, _, reference = setup
    emulator.settle(reference, "succeeded")
    await deliver(client, gateway["id"], emulator.outbox[-1])
    await run_webhook_jobs(database, jobs)


async def test_refunds_paygate_made_and_the_gateway_made_settle_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    await _succeed(client, setup, database, jobs)
    # paygate's own refund, left pending by the gateway, settled by its webhook.
    emulator.refund_status = "pending"
    refund = await client.post(
        f"/api/v1/payments/{payment['id']}/refunds",
        json={"amount": 2_500},
        headers={**tenant.headers, "Idempotency-Key": "refund-1"},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "pending"
    gateway_refund = next(iter(emulator.state.refunds))
    emulator.settle_refund(gateway_refund, "succeeded")
    await deliver(client, gateway["id"], emulator.outbox[-1])
    # A refund made in the gateway's dashboard: paygate learns it from the webhook.
    emulator.refund_at_gateway(reference, 1_000)
    await deliver(client, gateway["id"], emulator.outbox[-1])
    assert await run_webhook_jobs(database, jobs) == ["processed", "processed"]
    after = await payment_of(client, tenant, payment["id"])
    assert after["amount_refunded"] == 3_500
    assert sorted((r["amount"], r["status"]) for r in after["refunds"]) == [
        (1_000, "succeeded"),
        (2_500, "succeeded"),
    ]
    # The same gateway refund reported again (another event id) is not counted twice.
    emulator.queue_webhook("refund.succeeded", emulator.state.refunds[gateway_refund])
    await deliver(client, gateway["id"], emulator.outbox[-1])
    await run_webhook_jobs(database, jobs)
    assert (await payment_of(client, tenant, payment["id"]))["amount_refunded"] == 3_500


async def test_a_refund_before_its_payment_succeeded_retries_with_backoff_then_fails(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    early = emulator.sign_event(
        {
            "id": "evt_refund_first",
            "type": "refund.succeeded",
            "created_at": "2025-01-31T12:00:00Z",
            "data": {
                "id": "re_gw_early",
                "payment_id": reference,
                "status": "succeeded",
                "amount": 100,
                "currency": "USD",
            },
        }
    )
    stored = (await deliver(client, gateway["id"], early)).json()["id"]
    assert await run_webhook_jobs(database, jobs) == ["pending"]
    first = await event(client, tenant, stored)
    assert first["attempts"] == 1
    assert first["next_attempt_at"] is not None
    assert "retrying in 30 s" in first["outcome"]
    for _ in range(MAX_ATTEMPTS - 1):
        async with database.transaction() as session:
            await session.execute(
                text("UPDATE webhook_events SET next_attempt_at = :t WHERE id = :id"),
                {"t": utcnow() - timedelta(seconds=1), "id": stored},
            )
        assert await sweep_due_events() >= 1
    last = await event(client, tenant, stored)
    assert last["status"] == "failed"
    assert last["attempts"] == MAX_ATTEMPTS
    assert last["next_attempt_at"] is None
    assert [a["trigger"] for a in last["history"]] == ["received"] + ["retry"] * (MAX_ATTEMPTS - 1)
    # After the payment succeeds, a replay applies it.
    await _succeed(client, setup, database, jobs)
    replayed = await client.post(f"/api/v1/webhook-events/{stored}/replay", headers=tenant.headers)
    assert replayed.status_code == 202, replayed.text
    assert await run_webhook_jobs(database, jobs) == ["processed"]
    assert (await payment_of(client, tenant, payment["id"]))["amount_refunded"] == 100


async def test_disputes_mark_the_payment_and_never_reopen_after_closing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    setup: Setup,
    database: Database,
    jobs: JobContext,
) -> None:
    emulator, gateway, payment, reference = setup
    await _succeed(client, setup, database, jobs)
    opened = emulator.dispute(reference, "open", dispute_id="dp_1")
    await deliver(client, gateway["id"], opened)
    await run_webhook_jobs(database, jobs)
    async with database.transaction() as session:
        marks = await dispute_marks(session, tenant.company_id, [payment["id"]])
    assert marks[payment["id"]].status is DisputeStatus.OPEN
    lost = emulator.dispute(reference, "lost", dispute_id="dp_1")
    await deliver(client, gateway["id"], lost)
    # The "opened" event again, delivered late under another id: older, so ignored.
    stale = copy.deepcopy(opened.event) | {"id": "evt_stale_open"}
    await deliver(client, gateway["id"], emulator.sign_event(stale))
    await run_webhook_jobs(database, jobs)
    async with database.transaction() as session:
        marks = await dispute_marks(session, tenant.company_id, [payment["id"]])
    assert marks[payment["id"]].status is DisputeStatus.LOST
    audit = await client.get(
        "/api/v1/audit-log", params={"object_id": payment["id"]}, headers=tenant.headers
    )
    actions = [e["action"] for e in audit.json()["data"]]
    assert "payment.disputed" in actions
    assert "payment.dispute_updated" in actions
