"""One job processes received events: many webhooks wake the one job that waits, a webhook
arriving while a worker runs that job wakes another, a job finding a backlog wakes a
helper, and a long backlog is handed over to a fresh job in batches, so no received event
is left without a job to process it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.webhooks.inbound import processing, tasks
from paygate.webhooks.inbound.applying import Applied
from paygate.webhooks.inbound.models import WebhookEvent
from paygate.webhooks.inbound.processing import ProcessingContext, process_received
from paygate.webhooks.inbound.receive import RECEIPT_GRACE, RECEIVED_JOB
from paygate.webhooks.inbound.repository import Stored, gateway_for_webhook, store_verified
from tests.fakes.common import WebhookDelivery
from tests.webhooks.inbound.helpers import Scene


def _processing_notice(scene: Scene, event_id: str) -> WebhookDelivery:
    """The gateway says again that the payment is processing (it moves nothing)."""
    payment = scene.emulator.state.payments[scene.reference]
    return scene.emulator.sign_event(
        {
            "id": event_id,
            "type": "payment.processing",
            "created_at": "2025-01-31T12:00:00Z",
            "data": {**payment, "status": "processing"},
        }
    )


async def _received(scene: Scene, *deliveries: WebhookDelivery) -> list[str]:
    ids = []
    for delivery in deliveries:
        answer = await scene.deliver(delivery)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    return ids


async def _waiting_jobs(scene: Scene) -> list[int]:
    async with scene.database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT id FROM procrastinate_jobs WHERE task_name = :task AND status = 'todo'"
                " ORDER BY id"
            ),
            {"task": RECEIVED_JOB.task_name},
        )
        return list(rows.scalars().all())


async def _take_waiting_job(scene: Scene) -> int:
    """What a worker's fetch does to the job it runs."""
    async with scene.database.transaction() as session:
        taken = await session.execute(
            text(
                "UPDATE procrastinate_jobs SET status = 'doing' WHERE task_name = :task"
                " AND status = 'todo' RETURNING id"
            ),
            {"task": RECEIVED_JOB.task_name},
        )
        return int(taken.scalar_one())


async def _forget_job(scene: Scene, job_id: int) -> None:
    async with scene.database.transaction() as session:
        await session.execute(text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id})


async def _statuses(scene: Scene, event_ids: list[str]) -> list[str]:
    async with scene.database.transaction() as session:
        rows = await session.execute(
            select(WebhookEvent.id, WebhookEvent.status).where(WebhookEvent.id.in_(event_ids))
        )
        by_id = dict(rows.tuples().all())
    return [by_id[event_id] for event_id in event_ids]


def _context(scene: Scene) -> ProcessingContext:
    return ProcessingContext(scene.jobs.database, scene.jobs.keyring, scene.jobs.settings)


async def test_many_webhooks_wake_one_job_that_processes_them_in_the_order_received(
    scene: Scene,
) -> None:
    notices = [_processing_notice(scene, f"evt_many_{n}") for n in range(3)]
    scene.emulator.settle(scene.reference, "succeeded")
    event_ids = await _received(scene, *notices, scene.emulator.outbox[-1])
    assert len(await _waiting_jobs(scene)) == 1
    assert await scene.process() == ["processed"] * 4
    async with scene.database.transaction() as session:
        rows = await session.execute(
            select(WebhookEvent.id)
            .where(WebhookEvent.id.in_(event_ids))
            .order_by(WebhookEvent.processed_at)
        )
        assert list(rows.scalars().all()) == event_ids
    assert (await scene.payment_now())["status"] == "succeeded"
    assert await _waiting_jobs(scene) == []


async def test_a_webhook_arriving_while_the_job_runs_wakes_another(scene: Scene) -> None:
    (first,) = await _received(scene, _processing_notice(scene, "evt_before_the_run"))
    running = await _take_waiting_job(scene)
    try:
        (second,) = await _received(scene, _processing_notice(scene, "evt_during_the_run"))
        # The job a worker holds may already have looked: another waits for the second.
        assert len(await _waiting_jobs(scene)) == 1
        assert await process_received(_context(scene), limit=1) == ["processed"]
        assert await _statuses(scene, [first, second]) == ["processed", "pending"]
    finally:
        await _forget_job(scene, running)
    assert await scene.process() == ["processed"]
    assert await _statuses(scene, [first, second]) == ["processed", "processed"]


async def test_a_long_backlog_is_handed_over_to_a_fresh_job_in_batches(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A batch of one: the run never claims a second event, so no helper is woken and
    # only the hand-over can leave a job waiting.
    monkeypatch.setattr(tasks, "RECEIVED_BATCH", 1)
    notices = [_processing_notice(scene, f"evt_backlog_{n}") for n in range(2)]
    event_ids = await _received(scene, *notices)
    running = await _take_waiting_job(scene)
    try:
        await tasks.process_received_webhook_events()
    finally:
        await _forget_job(scene, running)
    assert await _statuses(scene, event_ids) == ["processed", "pending"]
    # Other jobs get their turn before it: it waits behind them as a new job.
    assert len(await _waiting_jobs(scene)) == 1
    assert await scene.process() == ["processed"]
    assert await _statuses(scene, event_ids) == ["processed"] * 2


async def test_a_store_still_committing_when_its_job_is_taken_is_processed_by_that_job(
    scene: Scene,
) -> None:
    """The store found the job waiting, so it woke none, and a worker took that job before
    the store committed: the job waits for the store before it concludes nothing is left."""
    (first,) = await _received(scene, _processing_notice(scene, "evt_committed_first"))
    delivery = _processing_notice(scene, "evt_in_flight")
    async with scene.database.autocommit() as session:
        read = await gateway_for_webhook(session, scene.gateway["id"])
    assert read is not None
    now = utcnow()
    row = {
        "id": new_id("evt"),
        "company_id": scene.tenant.company_id,
        "gateway_id": scene.gateway["id"],
        "provider": "custom",
        "provider_event_id": delivery.event["id"],
        "event_type": delivery.event["type"],
        "occurred_at": None,
        "received_at": now,
        "body": delivery.body,
        "headers": {},
        "verified": True,
        "verification": "a test's own store",
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now + RECEIPT_GRACE,
    }
    async with scene.database.transaction() as storing:
        stored = await store_verified(storing, row, read.version, RECEIVED_JOB)
        assert stored == Stored(row["id"], duplicate=False)
        running = await _take_waiting_job(scene)
        drain = asyncio.create_task(process_received(_context(scene), limit=10))
        for _ in range(250):  # the job runs the committed event, then waits for the store
            if await _statuses(scene, [first]) == ["processed"]:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        assert not drain.done()
    try:
        assert await asyncio.wait_for(drain, timeout=10) == ["processed", "processed"]
    finally:
        await _forget_job(scene, running)
    assert await _statuses(scene, [first, row["id"]]) == ["processed", "processed"]
    assert await _waiting_jobs(scene) == []


async def test_a_job_finding_a_backlog_wakes_a_helper_and_one_event_alone_does_not(
    scene: Scene,
) -> None:
    (alone,) = await _received(scene, _processing_notice(scene, "evt_alone"))
    running = await _take_waiting_job(scene)
    try:
        await tasks.process_received_webhook_events()
    finally:
        await _forget_job(scene, running)
    assert await _statuses(scene, [alone]) == ["processed"]
    assert await _waiting_jobs(scene) == []

    backlog = await _received(
        scene, *(_processing_notice(scene, f"evt_backlog_helped_{n}") for n in range(3))
    )
    running = await _take_waiting_job(scene)
    try:
        await tasks.process_received_webhook_events()
    finally:
        await _forget_job(scene, running)
    assert await _statuses(scene, backlog) == ["processed"] * 3
    # The helper woken at the second event: another of the worker's slots would have run it.
    assert len(await _waiting_jobs(scene)) == 1
    assert await scene.process() == []


async def test_an_event_whose_failure_cannot_be_recorded_is_set_aside_and_the_rest_run(
    scene: Scene, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken, after_it = await _received(
        scene,
        _processing_notice(scene, "evt_unrecordable"),
        _processing_notice(scene, "evt_after_the_unrecordable"),
    )
    real_apply = processing.apply_event

    async def apply(
        context: ProcessingContext, session: AsyncSession, event: WebhookEvent
    ) -> Applied:
        if event.id == broken:
            raise RuntimeError("processing broke")
        return await real_apply(context, session, event)

    real_record = processing._record_failure

    async def record_failure(*args: Any, attempt_row: bool = True, **kwargs: Any) -> str | None:
        if attempt_row:
            raise RuntimeError("recording the attempt broke")
        return await real_record(*args, attempt_row=attempt_row, **kwargs)

    monkeypatch.setattr(processing, "apply_event", apply)
    monkeypatch.setattr(processing, "_record_failure", record_failure)
    assert await process_received(_context(scene), limit=10) == ["pending", "processed"]
    async with scene.database.transaction() as session:
        event = await session.get(WebhookEvent, broken)
        assert event is not None
        # Counted and backed off, so no run claims it first again; the sweeper retries it.
        assert (event.status, event.attempts) == ("pending", 1)
        assert event.next_attempt_at is not None
        assert event.next_attempt_at > utcnow()
        assert event.last_error == "processing stopped, and so did recording its attempt"
    assert await _statuses(scene, [broken, after_it]) == ["pending", "processed"]
