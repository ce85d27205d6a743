"""Reserving a payment: the invoice's amount held for it before its gateway is called.

The invoice row lock serializes payments of one invoice; `invoices.amount_reserved` holds
what open payments may still collect, so the check needs no sum over payments.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import set_committed_value

from paygate.gateways.adapters.base import AdapterConfig, GatewayType, PaymentFlow
from paygate.gateways.adapters.sandbox import SANDBOX_SUCCESS_CARD, sandbox_card
from paygate.gateways.connection import payable_config
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.models import Invoice
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, Problem, conflict, not_found, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import Money
from paygate.kit.sql import HotStatement, run
from paygate.payments.context import PaymentContext
from paygate.payments.models import Payment, PaymentAttempt, PaymentEvent
from paygate.payments.schemas import PaymentCreate
from paygate.payments.state import PaymentStatus
from paygate.routing.card_brand import card_brand_of
from paygate.routing.decision import Route, choose
from paygate.routing.engine import RoutingInput

# Reserving a payment writes five rows in one statement: the invoice's reserved amount
# (the row the caller locked), the payment (processing), its attempt, its first event (from
# nothing to processing) and the audit entry (what `audit.record` writes). Foreign keys are
# checked at the end of the statement, so the attempt and the event may reference the
# payment inserted beside them.
_RESERVE_PAYMENT = HotStatement(
    text(
        """
    WITH reserved AS (
        UPDATE invoices SET amount_reserved = amount_reserved + :amount
        WHERE id = :invoice_id AND company_id = :company_id
    ), payment AS (
        INSERT INTO payments (id, company_id, invoice_id, gateway_id, status, amount, currency,
                              amount_refunded, flow, payment_method_type, payment_method,
                              return_url)
        VALUES (:payment_id, :company_id, :invoice_id, :gateway_id, :status, :amount,
                :currency, 0, :flow, :payment_method_type, :payment_method, :return_url)
    ), attempt AS (
        INSERT INTO payment_attempts (id, company_id, payment_id, gateway_id, status)
        VALUES (:attempt_id, :company_id, :payment_id, :gateway_id, :status)
    ), event AS (
        INSERT INTO payment_events (id, company_id, payment_id, from_status, to_status, cause,
                                    occurred_at)
        VALUES (:event_id, :company_id, :payment_id, NULL, :status, :cause, :occurred_at)
    )
    INSERT INTO audit_entries (id, company_id, actor_type, actor_id, actor_label, action,
                               object_type, object_id, outcome, ip, user_agent, request_id,
                               changes, detail)
    VALUES (:audit_id, :company_id, :actor_type, :actor_id, :actor_label, 'payment.created',
            'payment', :payment_id, 'success', :ip, :user_agent, :request_id, NULL, :detail)
    """
    )
)

PAYABLE = (InvoiceStatus.OPEN.value, InvoiceStatus.PARTIALLY_PAID.value)


class PaymentInProgress(Problem):
    def __init__(self) -> None:
        super().__init__(
            409,
            "payment-in-progress",
            "Payment in progress",
            "A payment for this invoice is already in progress.",
        )


@dataclass(frozen=True)
class Reserved:
    payment: Payment
    attempt: PaymentAttempt
    gateway: Gateway
    config: AdapterConfig
    # Routing's decision, when it chose the gateway: where a failover goes next.
    route: Route | None = None
    # The payment's attempts when known (a reserved payment has its first one), else None.
    attempts: int | None = None
    # Its first event, as written (the answer shows the history without reading it).
    opening_event: PaymentEvent | None = None


async def reserve_payment(
    context: PaymentContext,
    session: AsyncSession,
    invoice: Invoice,
    request: PaymentCreate,
    cause: str,
) -> Reserved:
    """Check what the invoice (row-locked by the caller) may still collect, choose the
    gateway and write the payment in its open state, reserving its amount on the invoice."""
    if invoice.status not in PAYABLE:
        raise conflict(f"This invoice is {invoice.status.replace('_', ' ')}: it cannot be paid.")
    # What open payments may still collect: kept on the invoice row, which the caller holds
    # locked, so two payments at once cannot both reserve the same amount.
    in_flight = invoice.amount_reserved
    available = invoice.amount_due - in_flight
    if available <= 0:
        raise PaymentInProgress()
    amount = request.amount if request.amount is not None else available
    if amount > available:
        raise validation_failed(
            [FieldError("amount", f"is more than what can be paid now ({available})", "too_large")]
        )
    if amount < invoice.amount_due and not invoice.allow_partial_payments:
        if in_flight:
            raise PaymentInProgress()
        raise validation_failed(
            [
                FieldError(
                    "amount",
                    "must be the full amount due: partial payments are off",
                    "partial_not_allowed",
                )
            ]
        )
    payment_id = new_id("pay")  # before routing: a split draws by the payment's id
    gateway, routed = await route(
        session, context.caller.company_id, invoice, amount, request, payment_id
    )
    config = payable_config(gateway, context.keyring, context.settings)
    payment = Payment(
        id=payment_id,
        company_id=context.caller.company_id,
        invoice_id=invoice.id,
        gateway_id=gateway.id,
        status=PaymentStatus.PROCESSING.value,
        amount=amount,
        currency=invoice.currency,
        amount_refunded=0,
        flow=(PaymentFlow.DIRECT if request.payment_method else PaymentFlow.HOSTED).value,
        payment_method_type=request.payment_method_type,
        payment_method=storable_method(gateway, request.payment_method),
        return_url=str(request.return_url) if request.return_url else None,
    )
    attempt = PaymentAttempt(
        id=new_id("att"),
        company_id=payment.company_id,
        payment_id=payment.id,
        gateway_id=gateway.id,
        status=PaymentStatus.PROCESSING.value,
    )
    opening_event = PaymentEvent(
        id=new_id("pev"),
        company_id=payment.company_id,
        payment_id=payment.id,
        from_status=None,
        to_status=payment.status,
        cause=cause,
        occurred_at=utcnow(),
    )
    origin = context.caller.origin
    actor = context.caller.actor
    # The reserve, the payment, its attempt, its first event and its audit entry in one
    # round trip (plain rows, not ORM objects: nothing else in this transaction reads them).
    await run(
        session,
        _RESERVE_PAYMENT,
        {
            "payment_id": payment.id,
            "company_id": payment.company_id,
            "invoice_id": payment.invoice_id,
            "gateway_id": payment.gateway_id,
            "status": payment.status,
            "amount": payment.amount,
            "currency": payment.currency,
            "flow": payment.flow,
            "payment_method_type": payment.payment_method_type,
            "payment_method": payment.payment_method,
            "return_url": payment.return_url,
            "attempt_id": attempt.id,
            "event_id": opening_event.id,
            "cause": cause,
            "occurred_at": opening_event.occurred_at,
            "audit_id": new_id("aud"),
            "actor_type": actor.type,
            "actor_id": actor.id,
            "actor_label": actor.label,
            "ip": origin.ip if origin else None,
            "user_agent": origin.user_agent if origin else None,
            "request_id": origin.request_id if origin else None,
            "detail": f"{Money(amount, invoice.currency)} for {invoice.number} via {gateway.name}",
        },
    )
    # Written by the statement above: the loaded row learns it without another UPDATE.
    set_committed_value(invoice, "amount_reserved", invoice.amount_reserved + amount)
    return Reserved(
        payment, attempt, gateway, config, routed, attempts=1, opening_event=opening_event
    )


async def route(
    session: AsyncSession,
    company_id: str,
    invoice: Invoice,
    amount: int,
    request: PaymentCreate,
    payment_id: str,
) -> tuple[Gateway, Route | None]:
    """The gateway the payment goes to: the one asked for, or routing's first choice (with
    routing's whole decision)."""
    if request.gateway_id is None:
        return await routed_gateway(session, company_id, invoice, amount, request, payment_id)
    gateways = GatewayRepository(session, company_id)
    candidates = await gateways.eligible(invoice.currency, amount, request.payment_method_type)
    chosen = next((g for g in candidates if g.id == request.gateway_id), None)
    if chosen is None:
        if await gateways.find(request.gateway_id) is None:
            raise not_found("gateway")
        raise validation_failed(
            [
                FieldError(
                    "gateway_id",
                    "is disabled or does not take this currency, amount or method",
                    "ineligible",
                )
            ]
        )
    return chosen, None


async def routed_gateway(
    session: AsyncSession,
    company_id: str,
    invoice: Invoice,
    amount: int,
    request: PaymentCreate,
    payment_id: str,
) -> tuple[Gateway, Route]:
    """Routing's first choice and whole decision (routing/): rules, default list, breakers,
    health."""
    payment = RoutingInput(
        amount=amount,
        currency=invoice.currency,
        payment_method_type=request.payment_method_type,
        card_brand=card_brand_of(request.payment_method),
        customer_country=invoice.customer_country,
        metadata=invoice.meta or {},
        payment_id=payment_id,
    )
    routed = await choose(session, company_id, payment)
    first = routed.first
    if first is None:
        raise Problem(
            422,
            "no-eligible-gateway",
            "No gateway can take this payment",
            f"No enabled gateway takes {Money(amount, invoice.currency)}"
            f" by {request.payment_method_type}. {routed.decision.explain()}",
        )
    return first, routed


def storable_method(gateway: Gateway, method: str | None) -> str | None:
    """What of the payment method may be kept to ask the gateway again later.

    Gateway tokens are kept. A sandbox card number is kept only as the public test card
    whose behaviour it has: a real card number typed into the sandbox is never stored.
    """
    if method is None or gateway.gateway_type != GatewayType.SANDBOX:
        return method
    card = sandbox_card(method)
    return card.number if card else SANDBOX_SUCCESS_CARD.number
