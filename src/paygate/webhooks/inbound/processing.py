"""Processing a stored event: what it says, applied through the one settle path.

A payment's status moves only through `settle_payment`, in the event's own transaction
(the payment and its invoice locked in one round trip), a known refund's only through
`PaymentService.report_refund` (both never move anything backwards and send a mismatched
amount or currency to review); refunds made at the gateway and disputes go through
`payments.gateway_reports`. An event about an object paygate does not know is
kept and marked `unmatched`.

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
from typing import TypeVar

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.adapters.base import PaymentResult, RefundResult
from paygate.gateways.adapters.base_errors import GatewayError
from paygate.gateways.connection import adapter_config
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.deferral import wait_for_wakers
from paygate.kit.ids import new_id
from paygate.kit.writes import write_together, writes_deferred
from paygate.payments.gateway_reports import (
    DisputeReport,
    GatewayReports,
    ReportDeferred,
    ReportRefused,
    find_payment,
    find_refund,
)
from paygate.payments.models import Payment, PaymentAttempt, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.service import Caller
from paygate.payments.settle import settle_payment
from paygate.security import audit
from paygate.security.crypto import Keyring, KeyringError
from paygate.settings import Settings
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt
from paygate.webhooks.inbound.providers import provider_for
from paygate.webhooks.inbound.providers.base import (
    DisputeNotice,
    IgnoredNotice,
    MalformedEvent,
    Notice,
    ObjectRef,
    PaymentNotice,
    RefundNotice,
    parse_json_object,
)
from paygate.webhooks.inbound.receive import RECEIVED_JOB
from paygate.webhooks.inbound.repository import claim_received, lock_event

logger = structlog.get_logger(__name__)

_Found = TypeVar("_Found")

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


class RetryLater(Exception):
    """Not applicable yet: the event stays pending and is retried with backoff."""


class CannotApply(Exception):
    """The event contradicts what paygate holds: retrying changes nothing."""


@dataclass(frozen=True)
class Applied:
    result: str  # processed, ignored, unmatched
    detail: str
    payment_id: str | None = None
    refund_id: str | None = None


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
                applied = await _apply_event(context, session, event)
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
        return _Ran(await _failed_run(context, claimed, trigger, actor, started, exc))
    _log_processed(event, trigger)
    return _Ran(event.status)


async def _failed_run(
    context: ProcessingContext,
    event_id: str,
    trigger: str,
    actor: str | None,
    started: datetime,
    exc: Exception,
) -> str | None:
    if isinstance(exc, RetryLater):
        return await _record_failure(context, event_id, trigger, actor, started, str(exc))
    if isinstance(exc, CannotApply | MalformedEvent):
        return await _record_failure(
            context, event_id, trigger, actor, started, str(exc), final=True
        )
    logger.exception("webhook_processing_crashed", event_id=event_id)
    reason = f"processing stopped with {type(exc).__name__}"
    return await _record_failure(context, event_id, trigger, actor, started, reason)


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
) -> str | None:
    """The failed run's attempt, and the event's retry (or its end), in a transaction of
    their own: the run's own changes were rolled back with it."""
    async with context.database.transaction() as session:
        event = await _claim(session, event_id)
        if event is None:
            return None
        if _done_already(event, trigger):
            return event.status  # processed meanwhile by another run
        attempt = _new_attempt(session, event, trigger, actor, started)
        _failed_attempt(event, attempt, reason, final=final or event.attempts >= MAX_ATTEMPTS)
        attempt.finished_at = utcnow()
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


def _failed_attempt(
    event: WebhookEvent, attempt: WebhookEventAttempt, reason: str, *, final: bool
) -> None:
    attempt.result = "error"
    attempt.detail = reason
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


async def _apply_event(
    context: ProcessingContext, session: AsyncSession, event: WebhookEvent
) -> Applied:
    provider = provider_for(event.provider)
    body = parse_json_object(event.body)
    if provider is None or body is None:
        raise CannotApply("the stored body is not an event paygate can read")
    notices = provider.notices(body)
    caller = Caller(event.company_id, audit.Actor("system", None, f"webhook {event.id}"), None)
    applier = _Applier(context, session, event, caller)
    results = [await applier.apply(notice) for notice in notices]
    if any(r.result == "processed" for r in results):
        status = "processed"
    elif any(r.result == "unmatched" for r in results):
        status = "unmatched"
    else:
        status = "ignored"
    return Applied(
        status,
        " ".join(r.detail for r in results),
        payment_id=next((r.payment_id for r in results if r.payment_id), None),
        refund_id=next((r.refund_id for r in results if r.refund_id), None),
    )


class _Applier:
    def __init__(
        self,
        context: ProcessingContext,
        session: AsyncSession,
        event: WebhookEvent,
        caller: Caller,
    ) -> None:
        self.session = session
        self.event = event
        self.context = context
        self.reports = GatewayReports(context.database, context.keyring, context.settings, caller)
        self.cause = f"webhook {event.id} ({event.event_type or 'event'})"

    async def apply(self, notice: Notice) -> Applied:
        if isinstance(notice, IgnoredNotice):
            return Applied("ignored", f"Ignored: {notice.why}.")
        if isinstance(notice, PaymentNotice):
            return await self._payment(notice)
        if isinstance(notice, RefundNotice):
            return await self._refund(notice)
        return await self._dispute(notice)

    async def _find(self, ref: ObjectRef) -> Payment | None:
        return await self._found_by(ref, self._lookup)

    async def _found_by(
        self, ref: ObjectRef, lookup: Callable[[ObjectRef], Awaitable[_Found | None]]
    ) -> _Found | None:
        if not ref:
            return None
        found = await lookup(ref)
        if found is not None:
            return found
        # Known under another of the gateway's names? Ask the gateway (read only).
        expanded = await self._expand(ref)
        return await lookup(expanded) if expanded != ref else None

    async def _lookup(self, ref: ObjectRef) -> Payment | None:
        return await find_payment(
            self.session,
            self.event.company_id,
            self.event.gateway_id,
            ref.references,
            ref.paygate_id,
        )

    async def _lock(self, ref: ObjectRef) -> tuple[Payment, PaymentAttempt] | None:
        """The payment, locked with its invoice for settling, and its newest attempt."""
        payments = PaymentRepository(self.session, self.event.company_id)
        return await payments.lock_reported(self.event.gateway_id, ref.references, ref.paygate_id)

    async def _expand(self, ref: ObjectRef) -> ObjectRef:
        provider = provider_for(self.event.provider)
        gateway = await self.session.get(Gateway, self.event.gateway_id)
        if provider is None or gateway is None:
            return ref
        try:
            config = adapter_config(gateway, self.context.keyring, self.context.settings)
            return await provider.expand(config, ref)
        except KeyringError:
            raise RetryLater("the gateway's credentials cannot be decrypted") from None
        except GatewayError as exc:
            raise RetryLater(
                f"the gateway could not say which payment this is: {exc.message}"
            ) from None

    def _unmatched(self, what: str, ref: ObjectRef | str) -> Applied:
        names = ref if isinstance(ref, str) else ", ".join(ref.references) or ref.paygate_id
        return Applied("unmatched", f"No {what} of this gateway is known as {names or '?'}.")

    async def _payment(self, notice: PaymentNotice) -> Applied:
        found = await self._found_by(notice.payment, self._lock)
        if found is None:
            return self._unmatched("payment", notice.payment)
        payment, attempt = found
        before = payment.status
        result = PaymentResult(
            # The reference paygate keeps (a Checkout session, a PayPal order) stays.
            gateway_reference=payment.gateway_reference or notice.payment.references[0],
            status=notice.status,
            amount=notice.amount,
            currency=notice.currency,
            decline=notice.decline,
            raw_status=notice.raw_status,
        )
        await settle_payment(self.session, payment, attempt, result, (), self.cause)
        change = f"{before} -> {payment.status}" if payment.status != before else before
        return Applied(
            "processed",
            f"Payment {payment.id}: the gateway says {notice.status.value} ({change}).",
            payment_id=payment.id,
        )

    async def _refund(self, notice: RefundNotice) -> Applied:
        payment = await self._find(notice.payment)
        if payment is None and notice.paygate_id:
            payment = await self._payment_of_refund(notice.paygate_id)
        if payment is None:
            return self._unmatched("payment", notice.payment)
        result = RefundResult(
            gateway_reference=notice.reference,
            status=notice.status,
            amount=notice.amount,
            currency=notice.currency,
            raw_status=notice.raw_status,
        )
        known = await find_refund(
            self.session, payment.company_id, payment.id, notice.reference, notice.paygate_id
        )
        try:
            if known is not None:
                refund = await self.reports.payments.report_refund(
                    known.id, result, cause=self.cause
                )
            else:
                refund = await self.reports.report_unknown_refund(
                    payment.id, result, cause=self.cause
                )
        except ReportDeferred as exc:
            raise RetryLater(str(exc)) from None
        except ReportRefused as exc:
            raise CannotApply(str(exc)) from None
        made = "" if known is not None else " (made at the gateway)"
        return Applied(
            "processed",
            f"Refund {refund.id}{made} of payment {payment.id}: the gateway says "
            f"{notice.status.value}; it is {refund.status}.",
            payment_id=payment.id,
            refund_id=refund.id,
        )

    async def _payment_of_refund(self, refund_id: str) -> Payment | None:
        statement = (
            select(Payment)
            .join(Refund, Refund.payment_id == Payment.id)
            .where(
                Refund.id == refund_id,
                Refund.company_id == self.event.company_id,
                Payment.gateway_id == self.event.gateway_id,
            )
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def _dispute(self, notice: DisputeNotice) -> Applied:
        payment = await self._find(notice.payment)
        if payment is None:
            return self._unmatched("payment", notice.payment)
        report = DisputeReport(
            reference=notice.reference,
            status=notice.status,
            reason=notice.reason,
            amount=notice.amount,
            currency=notice.currency,
            occurred_at=self.event.occurred_at or self.event.received_at,
        )
        mark = await self.reports.report_dispute(payment.id, report, cause=self.cause)
        shown = mark.status.value if mark else "none"
        return Applied(
            "processed",
            f"Payment {payment.id}: dispute {notice.reference} is {notice.status.value} at the "
            f"gateway; its mark here: {shown}.",
            payment_id=payment.id,
        )
