"""Replaying stored events: re-verify with the gateway's current secrets, then process.

A replay is a person's decision (after a fix, or a secret change), so the signature's
timestamp tolerance, which guards against replays by others at receipt, is not applied;
the signature itself must match a secret the gateway holds now. An event rejected at
receipt that now verifies takes its provider event id, unless a verified copy of that
event exists already (then it stays rejected: the copy was, or will be, processed).

A bulk replay re-runs every failed event of a time range, in a job that records its
progress after each batch (the page's progress bar) and carries on after a restart from
its cursor.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.security import audit
from paygate.webhooks.inbound.models import WebhookEvent, WebhookReplay
from paygate.webhooks.inbound.processing import ProcessingContext, process_event
from paygate.webhooks.inbound.providers import provider_for
from paygate.webhooks.inbound.providers.base import VerificationUnavailable
from paygate.webhooks.inbound.receive import RECEIPT_GRACE
from paygate.webhooks.inbound.repository import WebhookEventRepository
from paygate.webhooks.inbound.verification import request_of, verify_request, webhook_url

logger = structlog.get_logger(__name__)

BULK_TASK_NAME = "webhooks_inbound:bulk_replay_webhook_events"
BATCH = 25
PROCESSED = frozenset({"processed", "ignored", "unmatched"})


@dataclass(frozen=True)
class Prepared:
    ok: bool
    reason: str  # why it cannot be replayed; or the verification said
    unavailable: bool = False


async def prepare_replay(
    context: ProcessingContext, session: AsyncSession, event: WebhookEvent
) -> Prepared:
    """Re-verify the (row-locked) event; when it verifies, make it pending again."""
    gateway = await session.get(Gateway, event.gateway_id)
    provider = provider_for(event.provider)
    if gateway is None or provider is None:
        return Prepared(False, "the gateway is gone")
    now = utcnow()
    request = request_of(
        gateway.id,
        event.body,
        event.headers,
        webhook_url(context.settings, gateway.id),
        now,
    )
    try:
        verdict = await verify_request(
            provider, gateway, request, context.keyring, context.settings, check_time=False
        )
    except VerificationUnavailable as exc:
        return Prepared(False, f"it could not be verified now: {exc}", unavailable=True)
    if not verdict.ok:
        return Prepared(
            False, f"it does not verify with the gateway's current secrets: {verdict.detail}"
        )
    if not event.provider_event_id:
        return Prepared(False, "its body names no event id")
    if not event.verified:
        try:
            async with session.begin_nested():
                event.verified = True
                await session.flush()
        except IntegrityError:
            event.verified = False
            return Prepared(False, "this provider event was received verified already")
    event.verification = f"{verdict.detail} (re-verified for a replay)"
    event.status = "pending"
    event.next_attempt_at = now + RECEIPT_GRACE
    event.last_error = None
    await session.flush()
    return Prepared(True, verdict.detail)


async def run_bulk_replay(context: ProcessingContext, replay_id: str) -> None:
    """The job: replay the run's failed events batch by batch. Idempotent: a run no longer
    running is left alone, and a restarted one carries on after its cursor."""
    while True:
        async with context.database.transaction() as session:
            run = await session.get(WebhookReplay, replay_id, with_for_update=True)
            if run is None or run.status != "running":
                return
            ids = await WebhookEventRepository(session, run.company_id).failed_after(
                run.received_from, run.received_to, run.gateway_id, run.cursor, BATCH
            )
            actor = run.started_by
            company_id = run.company_id
        if not ids:
            await _finish(context, replay_id)
            return
        done = failed = 0
        for event_id in ids:
            status = await _replay_one(context, company_id, event_id, actor)
            done += 1
            failed += 0 if status in PROCESSED else 1
        async with context.database.transaction() as session:
            run = await session.get(WebhookReplay, replay_id, with_for_update=True)
            assert run is not None
            run.done += done
            run.failed += failed
            run.total = max(run.total, run.done)
            run.cursor = ids[-1]
            run.progressed_at = utcnow()


async def _replay_one(
    context: ProcessingContext, company_id: str, event_id: str, actor: str | None
) -> str | None:
    async with context.database.transaction() as session:
        event = await WebhookEventRepository(session, company_id).find(event_id, for_update=True)
        if event is None or event.status != "failed":
            return event.status if event else None
        prepared = await prepare_replay(context, session, event)
        if not prepared.ok:
            event.outcome = f"Bulk replay refused: {prepared.reason}."
            return "failed"
    try:
        return await process_event(context, event_id, trigger="bulk_replay", actor=actor)
    except Exception:  # one event's trouble must not stop the run
        logger.exception("bulk_replay_event_crashed", event_id=event_id)
        return "failed"


async def _finish(context: ProcessingContext, replay_id: str) -> None:
    async with context.database.transaction() as session:
        run = await session.get(WebhookReplay, replay_id, with_for_update=True)
        if run is None or run.status != "running":
            return
        now = utcnow()
        run.status = "finished"
        run.finished_at = now
        run.progressed_at = now
        run.total = max(run.total, run.done)
        run.detail = (
            f"{run.done} failed events replayed: {run.done - run.failed} processed, "
            f"{run.failed} still failing."
        )
        await audit.record(
            session,
            company_id=run.company_id,
            actor=audit.Actor(run.started_by_type, run.started_by_id, run.started_by),
            origin=None,
            action="webhook_event.bulk_replay_finished",
            object_type="webhook_replay",
            object_id=run.id,
            outcome="success" if not run.failed else "failure",
            detail=run.detail,
        )
        logger.info("webhook_bulk_replay_finished", replay_id=run.id, done=run.done)
