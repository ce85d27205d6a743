"""Jobs of inbound webhooks: process a received event, retry due ones, bulk replays."""

from __future__ import annotations

import procrastinate
import structlog

from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_coalesced
from paygate.kit.jobs_context import job_context
from paygate.webhooks.inbound.processing import (
    ProcessingContext,
    process_event,
    process_received,
)
from paygate.webhooks.inbound.receive import QUEUE, RECEIVED_JOB, TASK_NAME
from paygate.webhooks.inbound.replay import BULK_TASK_NAME, run_bulk_replay
from paygate.webhooks.inbound.repository import due_event_ids

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()

SWEEP_BATCH = 100
RECEIVED_BATCH = 500


def _context() -> ProcessingContext:
    context = job_context()
    return ProcessingContext(context.database, context.keyring, context.settings)


@blueprint.task(name=TASK_NAME.split(":", 1)[1], queue=QUEUE)
async def process_webhook_event(
    event_id: str, trigger: str = "received", actor: str | None = None
) -> None:
    """Deferred in the transaction that replayed the event."""
    await process_event(_context(), event_id, trigger=trigger, actor=actor)


@blueprint.task(name=RECEIVED_JOB.task_name.split(":", 1)[1], queue=RECEIVED_JOB.queue)
async def process_received_webhook_events() -> None:
    """Woken by the statements that store received events (one job waits at a time), so
    each run processes what arrived meanwhile. Finding a backlog, it wakes another job, so
    that a worker's idle slots (and other workers) drain beside it. Past RECEIVED_BATCH it
    hands over to a fresh job, so that other jobs get their turn."""
    processed = await process_received(_context(), RECEIVED_BATCH, on_backlog=_wake_another)
    if len(processed) >= RECEIVED_BATCH:
        await _wake_another()


async def _wake_another() -> bool:
    async with job_context().database.transaction() as session:
        return await defer_coalesced(session, RECEIVED_JOB)


async def sweep_due_events() -> int:
    """Process every pending event whose attempt is due: a lost job, or a retry after a
    failed attempt (backoff). Each run locks its row, so many workers are safe."""
    context = _context()
    async with context.database.transaction() as session:
        due = await due_event_ids(session, utcnow(), SWEEP_BATCH)
    for event_id in due:
        try:
            await process_event(context, event_id, trigger="retry")
        except Exception as exc:  # one event's trouble must not stop the sweep
            logger.error("webhook_sweep_failed", event_id=event_id, error_type=type(exc).__name__)
    return len(due)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sweep_webhook_events", queue=QUEUE)
async def sweep_webhook_events_task(timestamp: int) -> None:
    swept = await sweep_due_events()
    if swept:
        logger.info("swept_webhook_events", processed=swept)


@blueprint.task(name=BULK_TASK_NAME.split(":", 1)[1], queue=QUEUE)
async def bulk_replay_webhook_events(replay_id: str) -> None:
    """Deferred by WebhookEventService.start_bulk_replay with the run it recorded."""
    await run_bulk_replay(_context(), replay_id)
