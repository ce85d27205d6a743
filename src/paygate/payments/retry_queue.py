"""Server-to-server payments queued after a network error, to be tried again with backoff.

When an API payment cannot reach its gateway (no connection, a timeout before sending) and
no other gateway can take it (failover off, the gateway named by the caller, no gateway
left that can reuse the payment method), it is not failed: it stays `processing`, the API
answers with `failure.code = retry_scheduled` and when, and a job tries it again later
(payments/retry_tasks.py), re-routed so a recovered gateway may take it.

The `payment_retries` row is the durable truth: the job is deferred in the transaction
that writes it, and a sweeper runs any row whose job never did. The sweeper of open
payments leaves queued payments to this queue (their attempt never reached a gateway).
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import ForeignKey, Integer, String, Text, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.gateways.adapters.base_errors import GatewayError, GatewayUnavailable
from paygate.kit.clock import utcnow
from paygate.kit.columns import CompanyRef, CreatedAt, Timestamp
from paygate.kit.deferral import defer_in_transaction
from paygate.payments.models import Payment

# When a queued payment is tried again, counted from the failure before (5 retries in about
# three hours); after the last one it fails.
DELAYS = (
    timedelta(seconds=30),
    timedelta(minutes=2),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=2),
)
TASK = "payments_retries:retry_queued_payment"
QUEUE = "payments"


class PaymentRetry(Base):
    """A payment waiting to be tried again after a network error."""

    __tablename__ = "payment_retries"

    payment_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("payments.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    retries_done: Mapped[int] = mapped_column(Integer, default=0)
    # The caller named this gateway: the retry goes there again, nowhere else.
    pinned_gateway_id: Mapped[str | None] = mapped_column(String(40))
    next_attempt_at: Mapped[Timestamp] = mapped_column(index=True)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class RetryScheduled(GatewayUnavailable):
    """Not a gateway's answer: the payment was queued to be tried again (it stays
    `processing`, failure code `retry_scheduled`)."""

    code = "retry_scheduled"


def can_queue(outcome: object, *, customer_present: bool, retries_done: int = 0) -> bool:
    """A server-to-server payment whose request never left because of the network."""
    return (
        not customer_present
        and isinstance(outcome, GatewayUnavailable)
        and not isinstance(outcome, RetryScheduled)
        and outcome.network
        and not outcome.request_sent
        and retries_done < len(DELAYS)
    )


async def enqueue(
    session: AsyncSession,
    payment: Payment,
    outcome: GatewayError,
    *,
    retries_done: int,
    pinned_gateway_id: str | None,
) -> RetryScheduled:
    """Queue the (row-locked) payment's next try; returns what the settle path records."""
    at = utcnow() + DELAYS[retries_done]
    values = {
        "payment_id": payment.id,
        "company_id": payment.company_id,
        "retries_done": retries_done,
        "pinned_gateway_id": pinned_gateway_id,
        "next_attempt_at": at,
        "last_error": outcome.message,
        "updated_at": utcnow(),
    }
    await session.execute(
        insert(PaymentRetry)
        .values(**values)
        .on_conflict_do_update(index_elements=["payment_id"], set_=values)
    )
    await defer_in_transaction(session, TASK, queue=QUEUE, schedule_at=at, payment_id=payment.id)
    when = at.strftime("%H:%M:%S UTC")
    return RetryScheduled(
        f"{outcome.message} paygate tries again at {when} "
        f"(retry {retries_done + 1} of {len(DELAYS)}).",
        request_sent=False,
        network=True,
        gateway_code=outcome.gateway_code,
    )


async def due_retries(session: AsyncSession, late_by: timedelta, limit: int) -> list[str]:
    """Queued payments whose job should have run by now: the sweeper's work."""
    statement = (
        select(PaymentRetry.payment_id)
        .where(PaymentRetry.next_attempt_at <= utcnow() - late_by)
        .order_by(PaymentRetry.next_attempt_at)
        .limit(limit)
    )
    return list((await session.execute(statement)).scalars())
