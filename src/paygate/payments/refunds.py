"""Refunds: reserve a refund under the payment's row lock, call the gateway, settle.

A refund the gateway answered `pending`, or whose call timed out (or whose settle step never
ran), stays `pending` (its amount still reserved) until a sync, the sweeper or a webhook
learns its outcome and settles it through the one settle path.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import RefundRequest, RefundResult
from paygate.gateways.adapters.base_errors import GatewayError
from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.connection import payable_config
from paygate.gateways.models import Gateway
from paygate.kit.errors import FieldError, conflict, not_found, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import Money
from paygate.payments.context import PaymentContext
from paygate.payments.models import Payment, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import RefundCreate
from paygate.payments.settle import settle_refund
from paygate.payments.state import PaymentStatus
from paygate.security import audit

RefundOutcome = RefundResult | GatewayError


async def refund(context: PaymentContext, payment_id: str, request: RefundCreate) -> Refund:
    """Refund part or all of a payment; never more than paid and not yet refunded."""
    caller = context.caller
    async with context.database.transaction() as session:
        payments = PaymentRepository(session, caller.company_id)
        # The payment row lock serializes refunds: two at once cannot over-refund.
        payment = await payments.get(payment_id, for_update=True)
        if payment.status != PaymentStatus.SUCCEEDED:
            raise conflict("Only a succeeded payment can be refunded.")
        refundable = (
            payment.amount
            - payment.amount_refunded
            - await payments.pending_refund_amount(payment.id)
        )
        amount = request.amount if request.amount is not None else refundable
        if refundable <= 0:
            raise conflict("This payment is already fully refunded.")
        if amount > refundable:
            raise validation_failed(
                [
                    FieldError(
                        "amount",
                        f"is more than what can still be refunded ({refundable})",
                        "too_large",
                    )
                ]
            )
        pending = Refund(
            id=new_id("re"),
            company_id=payment.company_id,
            payment_id=payment.id,
            status="pending",
            amount=amount,
            currency=payment.currency,
            reason=request.reason,
        )
        session.add(pending)
        gateway = await session.get(Gateway, payment.gateway_id)
        assert gateway is not None
        config = payable_config(gateway, context.keyring, context.settings)
        await audit.record_by(
            session,
            caller,
            action="refund.created",
            object_type="payment",
            object_id=payment.id,
            detail=f"{Money(amount, payment.currency)} ({pending.id})",
        )
        refund_request = refund_request_of(payment, pending)
    with recording_gateway_calls() as calls:
        try:
            outcome: RefundOutcome = await build_adapter(config).refund_payment(refund_request)
        except GatewayError as exc:
            outcome = exc
    return await _settle_locked(context, pending.id, outcome, calls, asked=False)


async def sync_refund(context: PaymentContext, refund_id: str, cause: str) -> Refund:
    """Ask the gateway what became of a pending refund (answered pending, or its call timed
    out) and settle it; a refund that is no longer pending is returned as it is."""
    # The row locks are held around the gateway call: one conversation per payment.
    async with context.database.transaction() as session:
        payment, pending = await _lock(session, context.caller.company_id, refund_id)
        if pending.status != "pending":
            return pending
        gateway = await session.get(Gateway, payment.gateway_id)
        if gateway is None:
            raise not_found("gateway")
        config = payable_config(gateway, context.keyring, context.settings)
        request = refund_request_of(payment, pending)
        with recording_gateway_calls() as calls:
            try:
                outcome: RefundOutcome = await build_adapter(config).fetch_refund(
                    request, pending.gateway_reference
                )
            except GatewayError as exc:
                outcome = exc
        await settle_refund(session, payment, pending, outcome, calls, asked=True, cause=cause)
        return pending


async def report_refund(
    context: PaymentContext, refund_id: str, outcome: RefundOutcome, cause: str
) -> Refund:
    """The gateway told paygate what became of a refund (a webhook): settle with it."""
    return await _settle_locked(context, refund_id, outcome, [], asked=True, cause=cause)


async def _settle_locked(
    context: PaymentContext,
    refund_id: str,
    outcome: RefundOutcome,
    calls: list[GatewayCallRecord],
    *,
    asked: bool,
    cause: str = "the gateway answered",
) -> Refund:
    async with context.database.transaction() as session:
        payment, pending = await _lock(session, context.caller.company_id, refund_id)
        await settle_refund(session, payment, pending, outcome, calls, asked=asked, cause=cause)
        return pending


async def _lock(session: AsyncSession, company_id: str, refund_id: str) -> tuple[Payment, Refund]:
    """The refund's payment, then the refund, row-locked in the order `refund` locks them."""
    payments = PaymentRepository(session, company_id)
    payment_id = await payments.payment_id_of_refund(refund_id)
    if payment_id is None:
        raise not_found("refund")
    payment = await payments.get(payment_id, for_update=True)
    locked = await payments.refund(refund_id, for_update=True)
    if locked is None:
        raise not_found("refund")
    return payment, locked


def refund_request_of(payment: Payment, refund: Refund) -> RefundRequest:
    """The gateway request of a refund, the same every time it is sent or asked about."""
    return RefundRequest(
        reference=refund.id,
        idempotency_key=refund.id,
        gateway_payment_reference=payment.gateway_reference or "",
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
    )
