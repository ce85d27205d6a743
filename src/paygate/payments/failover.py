"""Failover: a payment that fails at one gateway for a reason of the gateway's goes on to the
next one routing offers, as a new attempt of the same payment. Never a second charge.

After each attempt the gateway status map (routing/status_map.py) decides:
- an answer (succeeded, waiting for the customer, a hard decline, an invalid request) is
  final for this call: the one settle path takes it;
- a technical failure after which the gateway certainly did nothing (no connection, a
  timeout before sending, 429, a custom gateway's 503, refused credentials) moves on to the
  next eligible gateway, within the company's retry policy;
- an unknown outcome (a timeout after sending, 500/502/504) is never failed over: the
  gateway may have charged. The payment stays `processing` and is resolved by asking that
  same gateway with the same idempotency key (`sync`, the sweeper, a webhook), before and
  instead of any other gateway;
- a soft decline goes on only when the policy lists its code.

The next gateway is the next one down the list routing decided when the payment was
reserved (not decided again; that gateway's row is read again, so one disabled meanwhile
is passed over). Each failover closes the failed attempt and opens the next in one
transaction (the payment row locked; its writes in one statement, the breaker's count
last), then calls the next gateway with the new attempt's id as idempotency key. A process
that dies in between leaves the payment `processing` with its newest attempt, which the
sweeper resolves by asking that attempt's gateway: at most one charge.

A server-to-server payment whose network failed where no failover is possible is queued
(payments/retry_queue.py) and answers `processing`, with when it is tried again.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayPaymentStatus,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.connection import CREDENTIALS_UNREADABLE, payable_config
from paygate.gateways.eligibility import unfit
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.models import Invoice
from paygate.kit.clock import utcnow
from paygate.kit.errors import Problem
from paygate.kit.ids import new_id
from paygate.kit.sql import HotStatement, run
from paygate.payments.context import PaymentContext
from paygate.payments.models import Payment, PaymentAttempt, PaymentEvent
from paygate.payments.repository import PaymentRepository
from paygate.payments.reserve import Reserved, storable_method
from paygate.payments.retry_queue import can_queue, enqueue
from paygate.payments.schemas import PaymentCreate
from paygate.payments.settle import Outcome
from paygate.payments.state import OPEN_STATUSES, FailureKind, PaymentStatus
from paygate.routing import breaker
from paygate.routing.card_brand import card_brand_of
from paygate.routing.decision import Route, route_for
from paygate.routing.engine import RoutingInput
from paygate.routing.policy import Policy, load_policy
from paygate.routing.status_map import Next, after_decline

logger = structlog.get_logger(__name__)

CUSTOMER = "customer"  # the actor type of the payment page


@dataclass(frozen=True)
class Tried:
    """The last attempt of a call: what the one settle path is to apply, and to which."""

    outcome: Outcome
    calls: list[GatewayCallRecord]
    attempt_id: str
    gateway: Gateway
    failed_over: bool
    # What this call's failovers wrote, as written: the attempts they closed and their
    # events (the answer shows the payment's path without reading it back).
    closed_attempts: tuple[PaymentAttempt, ...] = ()
    failover_events: tuple[PaymentEvent, ...] = ()


def customer_present(context: PaymentContext) -> bool:
    return context.caller.actor.type == CUSTOMER


def decline_of(outcome: Outcome) -> tuple[str, bool] | None:
    """(normalized code, hard) when the gateway declined; None otherwise."""
    if isinstance(outcome, GatewayDeclined):
        return outcome.decline_code, outcome.hard
    if isinstance(outcome, PaymentResult) and outcome.status is GatewayPaymentStatus.FAILED:
        decline = outcome.decline
        return (decline.code.value, decline.hard) if decline else ("card_declined", False)
    return None


def is_technical(outcome: Outcome) -> bool:
    """The gateway's (or the network's) fault, not the customer's or the request's."""
    return isinstance(outcome, GatewayUnavailable | GatewayMisconfigured)


def nothing_done(outcome: Outcome) -> bool:
    """A technical failure after which the gateway certainly did not act."""
    if isinstance(outcome, GatewayMisconfigured):
        return True
    return isinstance(outcome, GatewayUnavailable) and (not outcome.request_sent or outcome.refused)


def can_reuse(flow: str, from_gateway: Gateway, to_gateway: Gateway) -> bool:
    """Whether the next gateway can take what the customer gave the first one.

    A hosted payment carries nothing yet (the next gateway opens its own page); a payment
    method token belongs to its provider (a Stripe pm_... means nothing to Square), so a
    direct payment fails over only to a gateway of the same type.
    """
    if flow == PaymentFlow.HOSTED.value:
        return True
    return from_gateway.gateway_type == to_gateway.gateway_type


async def attempt_once(
    config: AdapterConfig, request: PaymentRequest
) -> tuple[Outcome, list[GatewayCallRecord]]:
    """One attempt at one gateway, its calls recorded."""
    adapter = build_adapter(config)
    with recording_gateway_calls() as calls:
        try:
            outcome: Outcome = await adapter.create_payment(request)
        except GatewayError as exc:
            outcome = exc
    return outcome, calls


async def call_with_failover(
    context: PaymentContext,
    reserved: Reserved,
    request: PaymentCreate | None,
    payment_request: PaymentRequest,
    *,
    pinned: bool | None = None,
    retries_done: int = 0,
) -> Tried:
    """Call the reserved attempt's gateway, failing over as the policy allows; returns the
    last attempt for the one settle path. `request`: the API's (None for a queued retry);
    `pinned`: the caller named the gateway (an API payment with gateway_id): no failover."""
    if pinned is None:
        pinned = bool(request and request.gateway_id) and not customer_present(context)
    gateway, config, attempt_id = reserved.gateway, reserved.config, reserved.attempt.id
    # Routing's decision when it chose the first gateway; else made at the first failover.
    route = reserved.route
    tried: list[str] = [gateway.id]
    attempts = reserved.attempts  # the payment's attempts (None: counted when needed)
    failed_over = False
    closed: list[PaymentAttempt] = []
    events: list[PaymentEvent] = []
    while True:
        outcome, calls = await attempt_once(config, payment_request)
        decline = decline_of(outcome)
        technical = is_technical(outcome)
        if not technical and decline is None:
            return Tried(
                outcome, calls, attempt_id, gateway, failed_over, tuple(closed), tuple(events)
            )
        company_id = context.caller.company_id
        async with context.database.transaction() as session:
            payments = PaymentRepository(session, company_id)
            # With routing's order known, the gateways still to try are read with the lock.
            ahead = [g.id for g in route.gateways if g.id not in tried] if route else []
            payment, attempt, current = await payments.lock_for_failover(
                reserved.payment.id, attempt_id, ahead
            )
            policy = route.policy if route is not None else await load_policy(session, company_id)
            step = (
                after_decline(decline[0], hard=decline[1], retry_codes=policy.retry_decline_codes)
                if decline is not None
                else (Next.FAIL_OVER if nothing_done(outcome) else Next.ASK_FIRST)
            )
            found = None
            if (
                step is Next.FAIL_OVER
                and not pinned
                and policy.fails_over(customer_present=customer_present(context))
                and PaymentStatus(payment.status) in OPEN_STATUSES
            ):
                if attempts is None:
                    attempts = len(await payments.attempts([payment.id]))
                if attempts < policy.max_attempts:
                    if route is None:
                        route = await route_for(
                            session,
                            company_id,
                            await routing_input_of(session, payment, payment_request),
                        )
                    found = await _next_gateway(
                        session, context, payment, route, gateway, tried, current
                    )
            detail = outcome.message if isinstance(outcome, GatewayError) else ""
            if found is not None:
                assert attempts is not None
                attempts += 1
                next_attempt_id, event = await _fail_over(
                    session, payment, attempt, outcome, calls, found[0], payment_request,
                    policy, attempts,
                )  # fmt: skip
                closed.append(attempt)
                events.append(event)
            elif can_queue(
                outcome, customer_present=customer_present(context), retries_done=retries_done
            ):
                assert isinstance(outcome, GatewayError)
                outcome = await enqueue(
                    session,
                    payment,
                    outcome,
                    retries_done=retries_done,
                    pinned_gateway_id=gateway.id if pinned else None,
                )
            if technical:
                # Last before the commit: every failing payment of this gateway writes this
                # one row, so its lock is held as briefly as can be.
                await breaker.record_outcome(
                    session, company_id, gateway.id, technical_failure=True, detail=detail,
                    policy=policy,
                )  # fmt: skip
        if found is None:
            return Tried(
                outcome, calls, attempt_id, gateway, failed_over, tuple(closed), tuple(events)
            )
        gateway, config = found
        tried.append(gateway.id)
        attempt_id = next_attempt_id
        payment_request = replace(payment_request, idempotency_key=next_attempt_id)
        failed_over = True


async def routing_input_of(
    session: AsyncSession, payment: Payment, payment_request: PaymentRequest | None = None
) -> RoutingInput:
    """What routing decides by for a payment already made (its invoice read again); the
    card brand from the method as typed when there is one, else as stored."""
    invoice = await session.get(Invoice, payment.invoice_id)
    method = payment_request.payment_method if payment_request else payment.payment_method
    return RoutingInput(
        amount=payment.amount,
        currency=payment.currency,
        payment_method_type=payment.payment_method_type,
        card_brand=card_brand_of(method),
        customer_country=invoice.customer_country if invoice else None,
        metadata=(invoice.meta or {}) if invoice else {},
        payment_id=payment.id,
    )


async def _next_gateway(
    session: AsyncSession,
    context: PaymentContext,
    payment: Payment,
    route: Route,
    current: Gateway,
    tried: list[str],
    read: dict[str, Gateway | None],
) -> tuple[Gateway, AdapterConfig] | None:
    """The next gateway in the payment's routing order that was not tried, can take what
    the customer gave the last one, still takes this payment and whose secrets open.

    The order is not decided again (it was made moments ago, for this payment); the
    candidate's row is read again (`read`: with the payment's lock), so a gateway disabled
    or edited since counts as it is."""
    gateways = GatewayRepository(session, payment.company_id)
    for planned in route.gateways:
        if planned.id in tried or not can_reuse(payment.flow, current, planned):
            continue
        # Read with the payment's lock (None: archived meanwhile), else read now.
        candidate = read[planned.id] if planned.id in read else await gateways.current(planned.id)
        if candidate is None or unfit(
            candidate, payment.currency, payment.amount, payment.payment_method_type
        ):
            continue
        try:
            return candidate, payable_config(candidate, context.keyring, context.settings)
        except Problem as problem:
            if problem.slug != CREDENTIALS_UNREADABLE:
                raise
            logger.warning("failover_skipped_unreadable", gateway_id=planned.id)
    return None


# A failover's writes in one round trip, under the payment's row lock (the caller's): the
# failed attempt closed, its gateway calls kept (the rows `settle.store_calls` writes), the
# next attempt opened, the payment moved to the next gateway, and the step as an event.
_FAIL_OVER = HotStatement(
    text(
        """
        WITH closed AS (
            UPDATE payment_attempts
            SET status = 'failed', error_code = :error_code, failure_kind = :failure_kind,
                error_message = :error_message, gateway_code = :gateway_code,
                gateway_reference = coalesce(:gateway_reference, gateway_reference),
                latency_ms = :latency_ms, finished_at = :now
            WHERE id = :attempt_id
        ), opened AS (
            INSERT INTO payment_attempts (id, company_id, payment_id, gateway_id, status)
            VALUES (:next_attempt_id, :company_id, :payment_id, :next_gateway_id, :status)
        ), moved AS (
            UPDATE payments
            SET gateway_id = :next_gateway_id, payment_method = :payment_method, updated_at = :now
            WHERE id = :payment_id
        ), event AS (
            INSERT INTO payment_events (id, company_id, payment_id, from_status, to_status, cause,
                                        occurred_at)
            VALUES (:event_id, :company_id, :payment_id, :status, :status, :cause, :now)
        )
        INSERT INTO gateway_calls (id, company_id, gateway_id, payment_id, operation, outcome,
                                   http_status, latency_ms, request, response, error)
        SELECT c.id, :company_id, :gateway_id, :payment_id, c.operation, c.outcome, c.http_status,
               c.latency_ms, c.request, c.response, c.error
        FROM jsonb_to_recordset(CAST(:calls AS jsonb)) AS c(
            id text, operation text, outcome text, http_status integer, latency_ms float8,
            request jsonb, response jsonb, error text)
        """
    )
)


async def _fail_over(
    session: AsyncSession,
    payment: Payment,
    attempt: PaymentAttempt,
    outcome: Outcome,
    calls: list[GatewayCallRecord],
    next_gateway: Gateway,
    payment_request: PaymentRequest,
    policy: Policy,
    number: int,
) -> tuple[str, PaymentEvent]:
    """Close the failed attempt and open the next one, the payment's attempt `number`, on
    the next gateway (the payment row is locked by the caller); the payment stays
    `processing`, its path recorded. Returns the new attempt's id and the step's event;
    `attempt` is left holding what was written."""
    failure = failure_of(outcome)
    next_attempt_id = new_id("att")
    latency = attempt.latency_ms
    if calls:
        latency = round((latency or 0) + sum(c.latency_ms for c in calls), 1)
    now = utcnow()
    event = PaymentEvent(
        id=new_id("pev"),
        company_id=payment.company_id,
        payment_id=payment.id,
        from_status=payment.status,
        to_status=payment.status,
        cause=(
            f"attempt {number - 1} at {attempt.gateway_id} failed ({failure['error_code']}):"
            f" failing over to {next_gateway.name} ({next_gateway.id}), attempt {number}"
            f" of at most {policy.max_attempts}"
        ),
        occurred_at=now,
    )
    await run(
        session,
        _FAIL_OVER,
        {
            **failure,
            "attempt_id": attempt.id,
            "latency_ms": latency,
            "now": now,
            "next_attempt_id": next_attempt_id,
            "company_id": payment.company_id,
            "payment_id": payment.id,
            "gateway_id": attempt.gateway_id,
            "next_gateway_id": next_gateway.id,
            "status": payment.status,
            "payment_method": storable_method(next_gateway, payment_request.payment_method),
            "event_id": event.id,
            "cause": event.cause,
            "calls": json.dumps([{"id": new_id("gcl"), **asdict(call)} for call in calls]),
        },
    )
    # The closed attempt as the statement left it (coalesce: a decline's reference wins).
    written = {**failure, "status": "failed", "latency_ms": latency, "finished_at": now}
    written["gateway_reference"] = failure["gateway_reference"] or attempt.gateway_reference
    for attribute, value in written.items():
        set_committed_value(attempt, attribute, value)
    logger.info(
        "payment_failed_over",
        payment_id=payment.id,
        from_gateway=attempt.gateway_id,
        to_gateway=next_gateway.id,
        reason=failure["error_code"],
        attempt=number,
    )
    return next_attempt_id, event


def failure_of(outcome: Outcome) -> dict[str, str | None]:
    """How a failed attempt records its outcome: code, kind, message, gateway's code and,
    for a decline, the gateway's reference."""
    decline = decline_of(outcome)
    code: str | None
    if decline is not None:
        code, kind = decline[0], FailureKind.DECLINE.value
    else:
        code = f"gateway_{outcome.code}" if isinstance(outcome, GatewayError) else None
        kind = FailureKind.TECHNICAL.value
    failure = {"error_code": code, "failure_kind": kind, "error_message": None,
               "gateway_code": None, "gateway_reference": None}  # fmt: skip
    if isinstance(outcome, GatewayError):
        failure.update(error_message=outcome.message, gateway_code=outcome.gateway_code)
    elif outcome.decline is not None:
        failure.update(
            error_message=outcome.decline.message,
            gateway_code=outcome.decline.gateway_code,
            gateway_reference=outcome.gateway_reference,
        )
    return failure


__all__ = [
    "Tried",
    "call_with_failover",
    "can_reuse",
    "customer_present",
    "failure_of",
    "routing_input_of",
]
