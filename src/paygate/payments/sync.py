"""Finishing open payments: asking the gateway (after a redirect, a timeout, a crash), hearing
from it (a webhook), and withdrawing payments a customer abandoned.

The payment's row lock is held around the gateway call: one conversation per payment at a
time. Whatever the gateway says goes through the one settle path.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import timedelta

from sqlalchemy import exists, select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import GatewayAdapter, PaymentRequest
from paygate.gateways.adapters.base_errors import GatewayError, GatewayRejected
from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.connection import payable_config
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.errors import not_found
from paygate.payments.context import PaymentContext
from paygate.payments.models import Payment, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.retry_queue import PaymentRetry
from paygate.payments.settle import Outcome, settle_payment
from paygate.payments.state import OPEN_STATUSES, PaymentStatus

Ask = Callable[[GatewayAdapter, PaymentRequest, Payment], Awaitable[Outcome]]


async def ask_gateway(context: PaymentContext, payment_id: str, ask: Ask, cause: str) -> Payment:
    """Lock an open payment, ask its gateway (`ask`), and settle with what it says."""
    async with context.database.transaction() as session:
        payments = PaymentRepository(session, context.caller.company_id)
        payment = await payments.get(payment_id, for_update=True)
        if PaymentStatus(payment.status) not in OPEN_STATUSES:
            return payment
        attempt = await payments.latest_attempt(payment.id)
        gateway = await session.get(Gateway, payment.gateway_id)
        if attempt is None or gateway is None:
            raise not_found("payment attempt")
        config = payable_config(gateway, context.keyring, context.settings)
        request = context.request_of(payment, attempt)
        with recording_gateway_calls() as calls:
            try:
                outcome: Outcome = await ask(build_adapter(config), request, payment)
            except GatewayError as exc:
                outcome = exc
        await settle_payment(session, payment, attempt, outcome, calls, cause)
        return payment


async def sync(context: PaymentContext, payment_id: str, cause: str) -> Payment:
    """Ask the gateway what became of an open payment (after a timeout, say)."""

    async def ask(adapter: GatewayAdapter, request: PaymentRequest, payment: Payment) -> Outcome:
        return await adapter.fetch_payment(request, payment.gateway_reference)

    return await ask_gateway(context, payment_id, ask, cause)


async def complete(
    context: PaymentContext, payment_id: str, return_params: Mapping[str, str]
) -> Payment:
    """The customer came back from the gateway's page or 3-D Secure: ask the gateway."""

    async def ask(adapter: GatewayAdapter, request: PaymentRequest, payment: Payment) -> Outcome:
        if payment.gateway_reference is None:
            return await adapter.fetch_payment(request, None)
        return await adapter.complete_payment(request, payment.gateway_reference, return_params)

    return await ask_gateway(context, payment_id, ask, "the customer returned from the gateway")


async def report(
    context: PaymentContext,
    payment_id: str,
    outcome: Outcome,
    cause: str,
    calls: tuple[GatewayCallRecord, ...] = (),
) -> Payment:
    """The gateway told paygate what became of a payment (a webhook): settle with it."""
    async with context.database.transaction() as session:
        payments = PaymentRepository(session, context.caller.company_id)
        payment = await payments.get(payment_id, for_update=True)
        attempt = await payments.latest_attempt(payment.id)
        if attempt is None:
            raise not_found("payment attempt")
        await settle_payment(session, payment, attempt, outcome, calls, cause)
        return payment


async def withdraw_abandoned(context: PaymentContext, invoice_id: str) -> bool:
    """Cancel the invoice's payments that wait for a customer action; True if any went."""
    async with context.database.transaction() as session:
        waiting = await PaymentRepository(session, context.caller.company_id).waiting_for_action(
            invoice_id
        )

    async def withdraw(
        adapter: GatewayAdapter, request: PaymentRequest, payment: Payment
    ) -> Outcome:
        if payment.gateway_reference is None:
            return await adapter.fetch_payment(request, None)
        try:
            return await adapter.cancel_payment(request, payment.gateway_reference)
        except GatewayRejected:
            # The gateway cannot withdraw it: it stays open, as the gateway says.
            return await adapter.fetch_payment(request, payment.gateway_reference)

    freed = False
    for payment_id in waiting:
        payment = await ask_gateway(
            context, payment_id, withdraw, "the customer started another payment"
        )
        freed = freed or PaymentStatus(payment.status) not in OPEN_STATUSES
    return freed


async def open_payment_ids(
    session: AsyncSession, older_than: timedelta, limit: int
) -> list[tuple[str, str]]:
    """(company, payment) of payments left open past `older_than`: the sweeper's work."""
    statement = (
        select(Payment.company_id, Payment.id)
        .where(
            Payment.status.in_([PaymentStatus.PROCESSING.value]),
            Payment.updated_at < utcnow() - older_than,
            # Queued after a network error: its retry job, not the sweeper, tries it again.
            ~exists().where(PaymentRetry.payment_id == Payment.id),
        )
        .order_by(Payment.updated_at)
        .limit(limit)
    )
    return [
        (company_id, payment_id)
        for company_id, payment_id in (await session.execute(statement)).tuples()
    ]


async def pending_refund_ids(
    session: AsyncSession, older_than: timedelta, limit: int
) -> list[tuple[str, str]]:
    """(company, refund) of refunds left pending past `older_than`: the sweeper's work."""
    statement = (
        select(Refund.company_id, Refund.id)
        .where(Refund.status == "pending", Refund.updated_at < utcnow() - older_than)
        .order_by(Refund.updated_at)
        .limit(limit)
    )
    return [
        (company_id, refund_id)
        for company_id, refund_id in (await session.execute(statement)).tuples()
    ]
