"""The job that tries a queued payment again (payments/retry_queue.py), and its sweeper."""

from __future__ import annotations

from datetime import timedelta

import procrastinate
import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import AdapterConfig
from paygate.gateways.adapters.base_errors import GatewayUnavailable
from paygate.gateways.connection import payable_config
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.errors import Problem
from paygate.kit.ids import new_id
from paygate.kit.jobs_context import job_context
from paygate.payments.context import Caller, PaymentContext
from paygate.payments.failover import call_with_failover, can_reuse, routing_input_of
from paygate.payments.models import Payment, PaymentAttempt, PaymentEvent
from paygate.payments.repository import PaymentRepository
from paygate.payments.reserve import Reserved
from paygate.payments.retry_queue import DELAYS, QUEUE, TASK, PaymentRetry, due_retries
from paygate.payments.settle import settle_payment
from paygate.payments.state import PaymentStatus
from paygate.routing.decision import Route, route_for
from paygate.security.audit import SYSTEM

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()

# A row whose job has not run this long after its time was lost: the sweeper runs it.
LATE_BY = timedelta(seconds=60)
BATCH = 50


async def _gateway_for(
    session: AsyncSession, context: PaymentContext, payment: Payment, row: PaymentRetry
) -> tuple[Gateway, AdapterConfig, Route] | None:
    """Where the retry goes: the named gateway, or the first in routing order now that can
    reuse the payment's method (a recovered gateway may be back first); with the decision,
    where a failover of this retry goes next."""
    current = await session.get(Gateway, payment.gateway_id)
    if current is None:
        return None
    route = await route_for(
        session, payment.company_id, await routing_input_of(session, payment), claim_probes=True
    )
    for candidate in route.gateways:
        if row.pinned_gateway_id not in (None, candidate.id):
            continue
        if not can_reuse(payment.flow, current, candidate):
            continue
        try:
            config = payable_config(candidate, context.keyring, context.settings)
        except Problem:
            continue
        return candidate, config, route
    return None


async def retry_queued(payment_id: str) -> str:
    """Try a queued payment again; returns what happened (for logs and tests)."""
    jobs = job_context()
    async with jobs.database.transaction() as session:
        company_id = (
            await session.execute(
                select(PaymentRetry.company_id).where(PaymentRetry.payment_id == payment_id)
            )
        ).scalar_one_or_none()
        if company_id is None:
            return "not queued"
        context = PaymentContext(
            jobs.database, jobs.keyring, jobs.settings, Caller(company_id, SYSTEM, None)
        )
        payments = PaymentRepository(session, company_id)
        # The payment's lock first, as everywhere else, then the queue's row.
        payment = await payments.get(payment_id, for_update=True)
        row = await session.get(PaymentRetry, payment_id, with_for_update=True)
        if row is None:
            return "not queued"
        if payment.status != PaymentStatus.PROCESSING:
            await session.delete(row)
            return f"already {payment.status}"
        if row.next_attempt_at > utcnow():
            return "not due"
        previous = await payments.latest_attempt(payment.id)
        assert previous is not None
        found = await _gateway_for(session, context, payment, row)
        retries = row.retries_done + 1
        if found is None:
            if retries < len(DELAYS):
                row.retries_done = retries
                row.next_attempt_at = utcnow() + DELAYS[retries]
                row.updated_at = utcnow()
                await defer_in_transaction(
                    session,
                    TASK,
                    queue=QUEUE,
                    schedule_at=row.next_attempt_at,
                    payment_id=payment_id,
                )
                return "no gateway yet"
            await session.delete(row)
            ran_out = GatewayUnavailable(
                f"No gateway could be reached after {len(DELAYS)} retries.",
                request_sent=False,
                network=True,
            )
            await settle_payment(session, payment, previous, ran_out, [], "queued retries ran out")
            return "failed"
        gateway, config, route = found
        # The queued attempt never reached its gateway: it is closed, and a new one sent.
        previous.status = PaymentStatus.FAILED.value
        previous.finished_at = utcnow()
        attempt = PaymentAttempt(
            id=new_id("att"),
            company_id=company_id,
            payment_id=payment.id,
            gateway_id=gateway.id,
            status=PaymentStatus.PROCESSING.value,
        )
        session.add(attempt)
        session.add(
            PaymentEvent(
                id=new_id("pev"),
                company_id=company_id,
                payment_id=payment.id,
                from_status=payment.status,
                to_status=payment.status,
                cause=f"queued retry {retries} of {len(DELAYS)}: sending to {gateway.name} "
                f"({gateway.id})",
            )
        )
        payment.gateway_id = gateway.id
        payment.updated_at = utcnow()
        pinned = row.pinned_gateway_id is not None
        # Deleted with the new attempt: if this process dies mid-call, the open-payment
        # sweeper asks the gateway about the new attempt, as after any interrupted call.
        await session.delete(row)
        await session.flush()
        request = context.request_of(payment, attempt)
    tried = await call_with_failover(
        context,
        Reserved(payment, attempt, gateway, config, route),
        None,
        request,
        pinned=pinned,
        retries_done=retries,
    )
    async with jobs.database.transaction() as session:
        payment, attempt = await PaymentRepository(session, company_id).lock_with_attempt(
            payment_id, tried.attempt_id
        )
        await settle_payment(
            session,
            payment,
            attempt,
            tried.outcome,
            tried.calls,
            "a queued retry: the gateway answered",
        )
        return payment.status


@blueprint.task(name="retry_queued_payment", queue=QUEUE)
async def retry_queued_payment(payment_id: str) -> None:
    outcome = await retry_queued(payment_id)
    logger.info("queued_payment_retried", payment_id=payment_id, outcome=outcome)


async def sweep_due_retries() -> int:
    """Run queued payments whose job never ran (lost with its worker); returns how many."""
    async with job_context().database.transaction() as session:
        due = await due_retries(session, LATE_BY, BATCH)
    for payment_id in due:
        try:
            await retry_queued(payment_id)
        except Exception as exc:  # one payment's trouble must not stop the sweep
            logger.error("retry_sweep_failed", payment_id=payment_id, error_type=type(exc).__name__)
    return len(due)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sweep_due_retries", queue="payments")
async def sweep_due_retries_task(timestamp: int) -> None:
    swept = await sweep_due_retries()
    if swept:
        logger.info("swept_due_retries", ran=swept)


__all__ = ["blueprint", "retry_queued", "sweep_due_retries"]
