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

Each failover closes the failed attempt and opens the next in one transaction (the payment
row locked), then calls the next gateway with the new attempt's id as idempotency key. A
process that dies in between leaves the payment `processing` with its newest attempt,
which the sweeper resolves by asking that attempt's gateway: at most one charge.

A server-to-server payment whose network failed where no failover is possible is queued
(payments/retry_queue.py) and answers `processing`, with when it is tried again.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayCallRecord,
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayPaymentStatus,
    GatewayUnavailable,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    recording_gateway_calls,
)
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.models import Gateway
from paygate.gateways.service import CREDENTIALS_UNREADABLE, payable_config
from paygate.invoices.models import Invoice
from paygate.kit.clock import utcnow
from paygate.kit.errors import Problem
from paygate.kit.ids import new_id
from paygate.payments.context import PaymentContext
from paygate.payments.models import Payment, PaymentAttempt, PaymentEvent
from paygate.payments.repository import PaymentRepository
from paygate.payments.reserve import Reserved, storable_method
from paygate.payments.retry_queue import can_queue, enqueue
from paygate.payments.schemas import PaymentCreate
from paygate.payments.settle import Outcome, store_calls
from paygate.payments.state import OPEN_STATUSES, FailureKind, PaymentStatus
from paygate.routing import breaker
from paygate.routing.card_brand import card_brand_of
from paygate.routing.decision import decide_with, load_inputs
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
    tried: list[str] = [gateway.id]
    failed_over = False
    while True:
        outcome, calls = await attempt_once(config, payment_request)
        decline = decline_of(outcome)
        if not is_technical(outcome) and decline is None:
            return Tried(outcome, calls, attempt_id, gateway, failed_over)
        company_id = context.caller.company_id
        async with context.database.transaction() as session:
            policy = await load_policy(session, company_id)
            if is_technical(outcome):
                assert isinstance(outcome, GatewayError)
                await breaker.record_outcome(
                    session,
                    company_id,
                    gateway.id,
                    technical_failure=True,
                    detail=outcome.message,
                    policy=policy,
                )
            step = (
                after_decline(decline[0], hard=decline[1], retry_codes=policy.retry_decline_codes)
                if decline is not None
                else (Next.FAIL_OVER if nothing_done(outcome) else Next.ASK_FIRST)
            )
            payments = PaymentRepository(session, company_id)
            payment, attempt = await payments.lock_with_attempt(reserved.payment.id, attempt_id)
            found = None
            if (
                step is Next.FAIL_OVER
                and not pinned
                and policy.fails_over(customer_present=customer_present(context))
                and await _attempt_count(session, payment) < policy.max_attempts
                and PaymentStatus(payment.status) in OPEN_STATUSES
            ):
                found = await _next_gateway(
                    session, context, payment, gateway, tried, payment_request
                )
            if found is None:
                if can_queue(
                    outcome,
                    customer_present=customer_present(context),
                    retries_done=retries_done,
                ):
                    assert isinstance(outcome, GatewayError)
                    outcome = await enqueue(
                        session,
                        payment,
                        outcome,
                        retries_done=retries_done,
                        pinned_gateway_id=gateway.id if pinned else None,
                    )
                return Tried(outcome, calls, attempt_id, gateway, failed_over)
            next_gateway, next_config = found
            next_attempt = await _fail_over(
                session, payment, attempt, outcome, calls, next_gateway, payment_request, policy
            )
        tried.append(next_gateway.id)
        gateway, config, attempt_id = next_gateway, next_config, next_attempt.id
        payment_request = replace(payment_request, idempotency_key=next_attempt.id)
        failed_over = True


async def _attempt_count(session: AsyncSession, payment: Payment) -> int:
    attempts = await PaymentRepository(session, payment.company_id).attempts([payment.id])
    return len(attempts)


async def _next_gateway(
    session: AsyncSession,
    context: PaymentContext,
    payment: Payment,
    current: Gateway,
    tried: list[str],
    payment_request: PaymentRequest,
) -> tuple[Gateway, AdapterConfig] | None:
    """The next gateway in routing order that was not tried and can take this payment."""
    invoice = await session.get(Invoice, payment.invoice_id)
    routing_input = RoutingInput(
        amount=payment.amount,
        currency=payment.currency,
        payment_method_type=payment.payment_method_type,
        card_brand=card_brand_of(payment_request.payment_method),
        customer_country=invoice.customer_country if invoice else None,
        metadata=(invoice.meta or {}) if invoice else {},
        payment_id=payment.id,
    )
    inputs = await load_inputs(session, payment.company_id)
    decision = await decide_with(session, payment.company_id, routing_input, inputs)
    for gateway_id in decision.gateway_ids:
        candidate = inputs.gateways[gateway_id]
        if gateway_id in tried or not can_reuse(payment.flow, current, candidate):
            continue
        try:
            return candidate, payable_config(candidate, context.keyring, context.settings)
        except Problem as problem:
            if problem.slug != CREDENTIALS_UNREADABLE:
                raise
            logger.warning("failover_skipped_unreadable", gateway_id=gateway_id)
    return None


async def _fail_over(
    session: AsyncSession,
    payment: Payment,
    attempt: PaymentAttempt,
    outcome: Outcome,
    calls: list[GatewayCallRecord],
    next_gateway: Gateway,
    payment_request: PaymentRequest,
    policy: Policy,
) -> PaymentAttempt:
    """Close the failed attempt and open the next one on the next gateway (the payment row
    is locked by the caller); the payment stays `processing`, its path recorded."""
    close_attempt(session, payment, attempt, outcome, calls)
    number = await _attempt_count(session, payment) + 1
    next_attempt = PaymentAttempt(
        id=new_id("att"),
        company_id=payment.company_id,
        payment_id=payment.id,
        gateway_id=next_gateway.id,
        status=PaymentStatus.PROCESSING.value,
    )
    session.add(next_attempt)
    previous_gateway = attempt.gateway_id
    payment.gateway_id = next_gateway.id
    payment.payment_method = storable_method(next_gateway, payment_request.payment_method)
    payment.updated_at = utcnow()
    session.add(
        PaymentEvent(
            id=new_id("pev"),
            company_id=payment.company_id,
            payment_id=payment.id,
            from_status=payment.status,
            to_status=payment.status,
            cause=(
                f"attempt {number - 1} at {previous_gateway} failed ({attempt.error_code}): "
                f"failing over to {next_gateway.name} ({next_gateway.id}), attempt {number} "
                f"of at most {policy.max_attempts}"
            ),
        )
    )
    await session.flush()
    logger.info(
        "payment_failed_over",
        payment_id=payment.id,
        from_gateway=previous_gateway,
        to_gateway=next_gateway.id,
        reason=attempt.error_code,
        attempt=number,
    )
    return next_attempt


def close_attempt(
    session: AsyncSession,
    payment: Payment,
    attempt: PaymentAttempt,
    outcome: Outcome,
    calls: list[GatewayCallRecord],
) -> None:
    """Record a superseded attempt's failure (its calls, code, kind, latency) as finished."""
    store_calls(session, payment.company_id, attempt.gateway_id, calls, payment_id=payment.id)
    decline = decline_of(outcome)
    if decline is not None:
        attempt.error_code = decline[0]
        attempt.failure_kind = FailureKind.DECLINE.value
    else:
        attempt.error_code = (
            f"gateway_{outcome.code}" if isinstance(outcome, GatewayError) else None
        )
        attempt.failure_kind = FailureKind.TECHNICAL.value
    if isinstance(outcome, GatewayError):
        attempt.error_message = outcome.message
        attempt.gateway_code = outcome.gateway_code
    elif outcome.decline is not None:
        attempt.error_message = outcome.decline.message
        attempt.gateway_code = outcome.decline.gateway_code
        attempt.gateway_reference = outcome.gateway_reference
    attempt.status = PaymentStatus.FAILED.value
    attempt.finished_at = utcnow()
    if calls:
        attempt.latency_ms = round((attempt.latency_ms or 0) + sum(c.latency_ms for c in calls), 1)


__all__ = [
    "Tried",
    "call_with_failover",
    "can_reuse",
    "close_attempt",
    "customer_present",
]
