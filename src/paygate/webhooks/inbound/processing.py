"""Processing a stored event: its runs, each what it says applied (`applying`) and
recorded in one transaction, and the retries of those that fail.

The event's row is locked for the whole run (SKIP LOCKED: a second worker leaves it
alone), so one event is processed by one worker at a time. Every run is recorded as an
attempt (the event's processing history). A run that fails is retried with backoff by
the sweeper until MAX_ATTEMPTS, then the event is `failed` (a person may replay it).
Processing twice is harmless: reporting the same status again changes nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.deferral import wait_for_wakers
from paygate.kit.ids import new_id
from paygate.kit.writes import write_together, writes_deferred
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from paygate.webhooks.inbound.applying import CannotApply, RetryLater, apply_event
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt
from paygate.webhooks.inbound.providers.base import MalformedEvent
from paygate.webhooks.inbound.receive import RECEIVED_JOB
from paygate.webhooks.inbound.repository import claim_received, lock_event

logger = structlog.get_logger(__name__)

# Attempt n failed: the next one after BACKOFF[n-1]; after MAX_ATTEMPTS the event failed.
BACKOFF = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
)
MAX_ATTEMPTS = len(BACKOFF) + 1
FINAL_STATUSES = frozenset({"processed", "ignored", "unmatched", "failed"})


@dataclass(frozen=True)
class ProcessingContext:
    database: Database
    keyring: Keyring
    settings: Settings


async def process_event(
    context: ProcessingContext, event_id: str, *, trigger: str, actor: str | None = None
) -> str | None:
    """Run processing of one event once; returns the event's status after it (None: locked
    elsewhere, unknown, or nothing to do). `trigger`: received, retry, replay or
    bulk_replay."""
    run = await _run(context, lambda session: _claim(session, event_id), trigger, actor)
    return run.status if run is not None else None


async def process_received(
    context: ProcessingContext,
    limit: int,
    *,
    on_backlog: Callable[[], Awaitable[object]] | None = None,
) -> list[str | None]:
    """Process received events no run has attempted yet, oldest first, each in its own
    run, until none is left or `limit` ran; their statuses after it. `on_backlog` is
    called once, when a second event is claimed: more than one was waiting."""
    statuses: list[str | None] = []
    waited = False
    while len(statuses) < limit:
        run = await _run(context, claim_received, "received", None)
        if run is None:
            if waited:
                break
            # A store that found this job waiting may not have committed yet: wait for
            # those in flight, then look once more.
            async with context.database.transaction() as session:
                await wait_for_wakers(session, RECEIVED_JOB)
            waited = True
            continue
        waited = False
        statuses.append(run.status)
        if len(statuses) == 2 and on_backlog is not None:
            await on_backlog()
    return statuses


@dataclass(frozen=True)
class _Ran:
    status: str | None


async def _run(
    context: ProcessingContext,
    claim: Callable[[AsyncSession], Awaitable[WebhookEvent | None]],
    trigger: str,
    actor: str | None,
) -> _Ran | None:
    """One run, of the event `claim` locks (None: it locked none). A run is one
    transaction: the event locked, what it says applied, the event and its attempt written
    with what settling wrote (one statement). A run that fails keeps nothing it did; its
    attempt and the backoff are then recorded on their own."""
    started = utcnow()
    claimed: str | None = None
    try:
        async with context.database.transaction() as session:
            event = await claim(session)
            if event is None:
                return None
            claimed = event.id
            if _done_already(event, trigger):
                return _Ran(event.status)  # a job run twice
            async with writes_deferred(session):
                applied = await apply_event(context, session, event)
                attempt = _new_attempt(session, event, trigger, actor, started)
                event.status = applied.result
                event.outcome = applied.detail
                event.last_error = None
                event.next_attempt_at = None
                event.processed_at = utcnow()
                event.payment_id = applied.payment_id or event.payment_id
                event.refund_id = applied.refund_id or event.refund_id
                attempt.result = applied.result
                attempt.detail = applied.detail
                attempt.finished_at = utcnow()
    except Exception as exc:
        if claimed is None:
            raise  # no event was locked: nothing to record against
        reason, final = _failure_of(claimed, exc)
        try:
            status = await _record_failure(
                context, claimed, trigger, actor, started, reason, final=final
            )
        except Exception:
            # Recording the failed run failed too: count it and back off all the same
            # (no attempt row), or the event would stay first in line for every run.
            logger.exception("webhook_failure_not_recorded", event_id=claimed)
            reason = "processing stopped, and so did recording its attempt"
            status = await _record_failure(
                context, claimed, trigger, actor, started, reason, attempt_row=False
            )
        return _Ran(status)
    _log_processed(event, trigger)
    return _Ran(event.status)


def _failure_of(event_id: str, exc: Exception) -> tuple[str, bool]:
    """Why a run failed, and whether it failed for good (True: retrying changes nothing)."""
    if isinstance(exc, RetryLater):
        return str(exc), False
    if isinstance(exc, CannotApply | MalformedEvent):
        return str(exc), True
    logger.exception("webhook_processing_crashed", event_id=event_id)
    return f"processing stopped with {type(exc).__name__}", False


async def _claim(session: AsyncSession, event_id: str) -> WebhookEvent | None:
    """The event, locked for this run; None when it is not one to process."""
    event = await lock_event(session, event_id)
    if event is None or not event.verified:
        return None
    return event


def _done_already(event: WebhookEvent, trigger: str) -> bool:
    """A job or the sweeper finding the event final: nothing to do (a replay runs again)."""
    return event.status in FINAL_STATUSES and trigger in ("received", "retry")


def _new_attempt(
    session: AsyncSession,
    event: WebhookEvent,
    trigger: str,
    actor: str | None,
    started: datetime,
) -> WebhookEventAttempt:
    event.attempts += 1
    attempt = WebhookEventAttempt(
        id=new_id("wha"),
        company_id=event.company_id,
        event_id=event.id,
        number=event.attempts,
        trigger=trigger,
        actor=actor,
        started_at=started,
        result="error",
    )
    session.add(attempt)
    return attempt


async def _record_failure(
    context: ProcessingContext,
    event_id: str,
    trigger: str,
    actor: str | None,
    started: datetime,
    reason: str,
    *,
    final: bool = False,
    attempt_row: bool = True,
) -> str | None:
    """The failed run's attempt, and the event's retry (or its end), in a transaction of
    their own: the run's own changes were rolled back with it."""
    async with context.database.transaction() as session:
        event = await _claim(session, event_id)
        if event is None:
            return None
        if _done_already(event, trigger):
            return event.status  # processed meanwhile by another run
        if attempt_row:
            attempt = _new_attempt(session, event, trigger, actor, started)
            attempt.result = "error"
            attempt.detail = reason
            attempt.finished_at = utcnow()
        else:
            event.attempts += 1
        _failed_attempt(event, reason, final=final or event.attempts >= MAX_ATTEMPTS)
        await write_together(session)
    _log_processed(event, trigger)
    return event.status


def _log_processed(event: WebhookEvent, trigger: str) -> None:
    logger.info(
        "webhook_processed",
        event_id=event.id,
        gateway_id=event.gateway_id,
        event_type=event.event_type,
        status=event.status,
        attempt=event.attempts,
        trigger=trigger,
    )


def _failed_attempt(event: WebhookEvent, reason: str, *, final: bool) -> None:
    event.last_error = reason
    if final:
        event.status = "failed"
        event.next_attempt_at = None
        event.outcome = f"Failed after {event.attempts} attempts: {reason}"
    else:
        event.status = "pending"
        delay = BACKOFF[min(event.attempts, len(BACKOFF)) - 1]
        event.next_attempt_at = utcnow() + delay
        event.outcome = f"Attempt {event.attempts} failed ({reason}); retrying in {_human(delay)}."
    logger.warning(
        "webhook_processing_failed",
        event_id=event.id,
        attempt=event.attempts,
        final=final,
        reason=reason,
    )


def _human(delay: timedelta) -> str:
    seconds = int(delay.total_seconds())
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h"
