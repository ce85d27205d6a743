"""Taking payments and refunds through a company's gateways.

Every gateway call follows one pattern, so nothing is lost when a process dies:
1. reserve: in a committed transaction, lock the invoice (or payment), check what may be
   collected (or refunded), and write the payment (or refund) in its open state;
2. call the gateway with the attempt's id as idempotency key, no database lock held;
3. settle: lock the payment row, move it along the state machine and record why.
A payment whose settle step never ran stays `processing`; `sync` and the sweeper ask the
gateway (with the same idempotency key) what became of it. Unknown is never failed.
A refund follows the same pattern: one the gateway answered `pending`, or whose call timed
out (or whose settle step never ran), stays `pending` (its amount still reserved) until
`sync_refund` or the sweeper asks the gateway again (`fetch_refund`, by its reference or
its idempotency key) and settles it: succeeded counts on the payment and invoice once.
Through the API, the client's Idempotency-Key is claimed inside step 1 and its answer stored
inside step 3 (`pay(before=..., after=...)`), so a payment costs two transactions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import timedelta

import structlog
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayAdapter,
    GatewayCallRecord,
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayRejected,
    GatewayType,
    GatewayUnavailable,
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
    recording_gateway_calls,
)
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.adapters.sandbox import SANDBOX_SUCCESS_CARD, sandbox_card
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.gateways.service import payable_config
from paygate.invoices.models import Invoice
from paygate.invoices.schemas import InvoiceStatus
from paygate.invoices.service import settle as settle_invoice
from paygate.kit.clock import utcnow
from paygate.kit.deps import Origin
from paygate.kit.errors import FieldError, Problem, conflict, not_found, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import Money
from paygate.payments.models import GatewayCall, Payment, PaymentAttempt, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import PaymentCreate, RefundCreate
from paygate.payments.state import OPEN_STATUSES, FailureKind, PaymentStatus, move
from paygate.security import audit
from paygate.security.audit import Actor
from paygate.security.crypto import Keyring
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

# Reserving a payment writes four rows in one statement: the payment (processing), its
# attempt, its first event (from nothing to processing) and the audit entry (what
# `audit.record` writes). Foreign keys are checked at the end of the statement, so the
# attempt and the event may reference the payment inserted beside them.
_RESERVE_PAYMENT = text(
    """
    WITH payment AS (
        INSERT INTO payments (id, company_id, invoice_id, gateway_id, status, amount, currency,
                              amount_refunded, flow, payment_method_type, payment_method,
                              return_url)
        VALUES (:payment_id, :company_id, :invoice_id, :gateway_id, :status, :amount,
                :currency, 0, :flow, :payment_method_type, :payment_method, :return_url)
    ), attempt AS (
        INSERT INTO payment_attempts (id, company_id, payment_id, gateway_id, status)
        VALUES (:attempt_id, :company_id, :payment_id, :gateway_id, :status)
    ), event AS (
        INSERT INTO payment_events (id, company_id, payment_id, from_status, to_status, cause)
        VALUES (:event_id, :company_id, :payment_id, NULL, :status, :cause)
    )
    INSERT INTO audit_entries (id, company_id, actor_type, actor_id, actor_label, action,
                               object_type, object_id, outcome, ip, user_agent, request_id,
                               changes, detail)
    VALUES (:audit_id, :company_id, :actor_type, :actor_id, :actor_label, 'payment.created',
            'payment', :payment_id, 'success', :ip, :user_agent, :request_id, NULL, :detail)
    """
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
class Caller:
    """Who takes the payment: an API client, an admin, or a customer on the payment page."""

    company_id: str
    actor: Actor
    origin: Origin | None


Outcome = PaymentResult | GatewayError


@dataclass(frozen=True)
class Settled:
    """What the settle transaction holds when it is about to commit (for `pay(after=...)`)."""

    session: AsyncSession
    payment: Payment  # row-locked, settled
    attempt: PaymentAttempt  # row-locked, settled
    # The payment was open when settling began: this request settled it, so it has this one
    # attempt and no refunds yet. False: sync or the sweeper settled it meanwhile.
    first: bool
    public_config: Mapping[str, object]  # the gateway's non-secret configuration


class PaymentService:
    def __init__(
        self, database: Database, keyring: Keyring, settings: Settings, caller: Caller
    ) -> None:
        self.database = database
        self.keyring = keyring
        self.settings = settings
        self.caller = caller

    # --- paying ------------------------------------------------------------------------

    async def pay(
        self,
        invoice_id: str,
        request: PaymentCreate,
        *,
        cause: str = "created through the API",
        before: Callable[[AsyncSession], Awaitable[None]] | None = None,
        after: Callable[[Settled], Awaitable[None]] | None = None,
    ) -> str:
        """Take a payment for an invoice; returns the payment's id, whatever its outcome.

        `before` runs first in the reserve transaction (the API claims its Idempotency-Key
        there; raising aborts everything), `after` last in the settle transaction (the API
        builds and stores its answer there): two transactions per payment, not six.
        """
        try:
            return await self._pay(invoice_id, request, cause, before, after)
        except PaymentInProgress:
            # A customer who abandoned a redirect or 3-D Secure step starts over: withdraw
            # those payments at the gateway (when it can) and try once more.
            if not await self._withdraw_abandoned(invoice_id):
                raise
            return await self._pay(invoice_id, request, cause, before, after)

    async def _pay(
        self,
        invoice_id: str,
        request: PaymentCreate,
        cause: str,
        before: Callable[[AsyncSession], Awaitable[None]] | None,
        after: Callable[[Settled], Awaitable[None]] | None,
    ) -> str:
        async with self.database.transaction() as session:
            if before is not None:
                await before(session)
            invoice = await PaymentRepository(session, self.caller.company_id).lock_invoice(
                invoice_id
            )
            payment, attempt, gateway, config = await self._reserve_payment(
                session, invoice, request, cause
            )
            # The method as typed serves this one call; the row keeps only what is storable.
            payment_request = replace(
                self._request_of(payment, attempt), payment_method=request.payment_method
            )
        adapter = build_adapter(config)
        await self._call_and_settle(
            payment.id,
            attempt.id,
            lambda: adapter.create_payment(payment_request),
            after=after,
            public_config=dict(gateway.public_config or {}),
        )
        return payment.id

    async def _withdraw_abandoned(self, invoice_id: str) -> bool:
        """Cancel the invoice's payments that wait for a customer action; True if any went."""
        async with self.database.transaction() as session:
            waiting = await PaymentRepository(session, self.caller.company_id).waiting_for_action(
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
            payment = await self._ask_gateway(
                payment_id, withdraw, "the customer started another payment"
            )
            freed = freed or PaymentStatus(payment.status) not in OPEN_STATUSES
        return freed

    async def _reserve_payment(
        self, session: AsyncSession, invoice: Invoice, request: PaymentCreate, cause: str
    ) -> tuple[Payment, PaymentAttempt, Gateway, AdapterConfig]:
        if invoice.status not in PAYABLE:
            raise conflict(
                f"This invoice is {invoice.status.replace('_', ' ')}: it cannot be paid."
            )
        payments = PaymentRepository(session, self.caller.company_id)
        in_flight = await payments.in_flight_amount(invoice.id)
        available = invoice.amount_due - in_flight
        if available <= 0:
            raise PaymentInProgress()
        amount = request.amount if request.amount is not None else available
        if amount > available:
            raise validation_failed(
                [
                    FieldError(
                        "amount", f"is more than what can be paid now ({available})", "too_large"
                    )
                ]
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
        gateway = await self._route(session, invoice, amount, request)
        config = payable_config(gateway, self.keyring, self.settings)
        payment = Payment(
            id=new_id("pay"),
            company_id=self.caller.company_id,
            invoice_id=invoice.id,
            gateway_id=gateway.id,
            status=PaymentStatus.PROCESSING.value,
            amount=amount,
            currency=invoice.currency,
            amount_refunded=0,
            flow=(PaymentFlow.DIRECT if request.payment_method else PaymentFlow.HOSTED).value,
            payment_method_type=request.payment_method_type,
            payment_method=_storable_method(gateway, request.payment_method),
            return_url=str(request.return_url) if request.return_url else None,
        )
        attempt = PaymentAttempt(
            id=new_id("att"),
            company_id=payment.company_id,
            payment_id=payment.id,
            gateway_id=gateway.id,
            status=PaymentStatus.PROCESSING.value,
        )
        origin = self.caller.origin
        actor = self.caller.actor
        # The payment, its attempt, its first event and its audit entry in one round trip
        # (plain rows, not ORM objects: nothing else in this transaction reads them back).
        await session.execute(
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
                "event_id": new_id("pev"),
                "cause": cause,
                "audit_id": new_id("aud"),
                "actor_type": actor.type,
                "actor_id": actor.id,
                "actor_label": actor.label,
                "ip": origin.ip if origin else None,
                "user_agent": origin.user_agent if origin else None,
                "request_id": origin.request_id if origin else None,
                "detail": f"{Money(amount, invoice.currency)} for {invoice.number}"
                f" via {gateway.name}",
            },
        )
        return payment, attempt, gateway, config

    async def _route(
        self, session: AsyncSession, invoice: Invoice, amount: int, request: PaymentCreate
    ) -> Gateway:
        gateways = GatewayRepository(session, self.caller.company_id)
        candidates = await gateways.eligible(invoice.currency, amount, request.payment_method_type)
        if request.gateway_id is not None:
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
            return chosen
        if not candidates:
            raise Problem(
                422,
                "no-eligible-gateway",
                "No gateway can take this payment",
                f"No enabled gateway takes {Money(amount, invoice.currency)}"
                f" by {request.payment_method_type}.",
            )
        return candidates[0]

    def _request_of(self, payment: Payment, attempt: PaymentAttempt) -> PaymentRequest:
        return PaymentRequest(
            reference=payment.id,
            idempotency_key=attempt.id,
            amount=payment.amount,
            currency=payment.currency,
            flow=PaymentFlow(payment.flow),
            payment_method=payment.payment_method,
            # The gateway sends the customer back to paygate, which finishes the payment.
            return_url=f"{self.settings.base_url}/payments/{payment.id}/return",
            cancel_url=f"{self.settings.base_url}/payments/{payment.id}/return?canceled=1",
            description=f"Payment {payment.id}",
        )

    # --- finishing ---------------------------------------------------------------------

    async def complete(self, payment_id: str, return_params: Mapping[str, str]) -> Payment:
        """The customer came back from the gateway's page or 3-D Secure: ask the gateway."""

        async def ask(
            adapter: GatewayAdapter, request: PaymentRequest, payment: Payment
        ) -> Outcome:
            if payment.gateway_reference is None:
                return await adapter.fetch_payment(request, None)
            return await adapter.complete_payment(request, payment.gateway_reference, return_params)

        return await self._ask_gateway(payment_id, ask, "the customer returned from the gateway")

    async def review(self, payment_id: str, outcome: PaymentStatus, note: str) -> Payment:
        """A person decides a payment whose gateway answer did not match what was asked."""
        async with self.database.transaction() as session:
            payment = await PaymentRepository(session, self.caller.company_id).get(
                payment_id, for_update=True
            )
            if payment.status != PaymentStatus.REQUIRES_REVIEW:
                raise conflict("Only a payment in review can be decided.")
            who = self.caller.actor.label or self.caller.actor.id or "a reviewer"
            await move(session, payment, outcome, f"reviewed by {who}: {note}")
            if outcome is PaymentStatus.SUCCEEDED:
                invoice = await PaymentRepository(session, payment.company_id).lock_invoice(
                    payment.invoice_id
                )
                invoice.amount_paid += payment.amount
                settle_invoice(invoice)
            await audit.record(
                session,
                company_id=self.caller.company_id,
                actor=self.caller.actor,
                origin=self.caller.origin,
                action="payment.reviewed",
                object_type="payment",
                object_id=payment.id,
                changes={"status": {"before": "requires_review", "after": outcome.value}},
                detail=note,
            )
            return payment

    async def sync(self, payment_id: str, *, cause: str = "synced with the gateway") -> Payment:
        """Ask the gateway what became of an open payment (after a timeout, say)."""

        async def ask(
            adapter: GatewayAdapter, request: PaymentRequest, payment: Payment
        ) -> Outcome:
            return await adapter.fetch_payment(request, payment.gateway_reference)

        return await self._ask_gateway(payment_id, ask, cause)

    async def _ask_gateway(
        self,
        payment_id: str,
        ask: Callable[[GatewayAdapter, PaymentRequest, Payment], Awaitable[Outcome]],
        cause: str,
    ) -> Payment:
        # The row lock is held around the gateway call: one conversation per payment at a time.
        async with self.database.transaction() as session:
            payments = PaymentRepository(session, self.caller.company_id)
            payment = await payments.get(payment_id, for_update=True)
            if PaymentStatus(payment.status) not in OPEN_STATUSES:
                return payment
            attempt = await payments.latest_attempt(payment.id)
            gateway = await session.get(Gateway, payment.gateway_id)
            if attempt is None or gateway is None:
                raise not_found("payment attempt")
            config = payable_config(gateway, self.keyring, self.settings)
            request = self._request_of(payment, attempt)
            with recording_gateway_calls() as calls:
                try:
                    outcome: Outcome = await ask(build_adapter(config), request, payment)
                except GatewayError as exc:
                    outcome = exc
            await self._settle(session, payment, attempt, outcome, calls, cause)
            return payment

    async def _call_and_settle(
        self,
        payment_id: str,
        attempt_id: str,
        call: Callable[[], Awaitable[PaymentResult]],
        *,
        after: Callable[[Settled], Awaitable[None]] | None = None,
        public_config: Mapping[str, object] | None = None,
    ) -> None:
        with recording_gateway_calls() as calls:
            try:
                outcome: Outcome = await call()
            except GatewayError as exc:
                outcome = exc
        async with self.database.transaction() as session:
            payment, attempt = await PaymentRepository(
                session, self.caller.company_id
            ).lock_with_attempt(payment_id, attempt_id)
            first = PaymentStatus(payment.status) in OPEN_STATUSES
            await self._settle(session, payment, attempt, outcome, calls, "the gateway answered")
            if after is not None:
                await after(Settled(session, payment, attempt, first, public_config or {}))

    async def _settle(
        self,
        session: AsyncSession,
        payment: Payment,
        attempt: PaymentAttempt,
        outcome: Outcome,
        calls: list[GatewayCallRecord],
        cause: str,
    ) -> None:
        self._store_calls(session, payment.gateway_id, calls, payment_id=payment.id)
        if PaymentStatus(payment.status) not in OPEN_STATUSES:
            return  # settled meanwhile (by sync or the sweeper): the first answer stands
        if isinstance(outcome, GatewayError):
            target, reason = self._status_after_error(payment, outcome)
        else:
            target, reason = self._status_after_answer(payment, outcome)
        moved = await move(session, payment, target, f"{cause}: {reason}")
        if not moved:
            # Asked and still undecided: the sweeper moves on to others before asking again.
            payment.updated_at = utcnow()
        attempt.status = payment.status
        attempt.gateway_reference = payment.gateway_reference
        attempt.error_code = payment.failure_code
        attempt.error_message = payment.failure_message
        attempt.gateway_code = payment.gateway_code
        attempt.failure_kind = _failure_kind(outcome, payment.failure_code)
        if calls:
            attempt.latency_ms = round(
                (attempt.latency_ms or 0) + sum(c.latency_ms for c in calls), 1
            )
        if target not in OPEN_STATUSES:
            attempt.finished_at = utcnow()
        if moved and target is PaymentStatus.SUCCEEDED:
            invoice = await PaymentRepository(session, payment.company_id).lock_invoice(
                payment.invoice_id
            )
            invoice.amount_paid += payment.amount
            settle_invoice(invoice)
        context = {
            "payment_id": payment.id,
            "invoice_id": payment.invoice_id,
            "gateway_id": payment.gateway_id,
            "attempt_id": attempt.id,
            "status": payment.status,
            "reason": reason,
        }
        if target in (PaymentStatus.FAILED, PaymentStatus.REQUIRES_REVIEW):
            # A failed transaction is logged with its full context (never a secret or card).
            logger.warning(
                "payment_failed",
                **context,
                amount=payment.amount,
                currency=payment.currency,
                failure_code=payment.failure_code,
                failure_message=payment.failure_message,
                gateway_code=payment.gateway_code,
                gateway_reference=payment.gateway_reference,
                calls=[(c.operation, c.outcome, c.http_status, c.error) for c in calls],
            )
        else:
            logger.info("payment_settled", **context)

    def _status_after_answer(
        self, payment: Payment, result: PaymentResult
    ) -> tuple[PaymentStatus, str]:
        payment.gateway_reference = result.gateway_reference or payment.gateway_reference
        # A definite answer replaces whatever an earlier unknown outcome said.
        payment.failure_code = payment.failure_message = payment.gateway_code = None
        if (result.amount, result.currency.upper()) != (payment.amount, payment.currency):
            payment.review_reason = (
                f"The gateway answered {result.amount} {result.currency.upper()} "
                f"for a payment of {payment.amount} {payment.currency}."
            )
            payment.failure_code = "amount_mismatch"
            payment.failure_message = payment.review_reason
            return PaymentStatus.REQUIRES_REVIEW, "amount or currency mismatch"
        if result.status is GatewayPaymentStatus.SUCCEEDED:
            payment.next_action = None
            return PaymentStatus.SUCCEEDED, "succeeded"
        if result.status is GatewayPaymentStatus.REQUIRES_ACTION:
            if result.next_action is not None:
                payment.next_action = {
                    "type": result.next_action.type,
                    "redirect_url": result.next_action.redirect_url,
                    "client_secret": result.next_action.client_secret,
                }
            return PaymentStatus.REQUIRES_ACTION, "the customer must act"
        if result.status is GatewayPaymentStatus.PROCESSING:
            return PaymentStatus.PROCESSING, "the gateway is still processing"
        payment.next_action = None
        if result.status is GatewayPaymentStatus.CANCELED:
            payment.failure_code = "canceled"
            payment.failure_message = "The payment was canceled."
            return PaymentStatus.CANCELED, "canceled"
        decline = result.decline
        payment.failure_code = decline.code.value if decline else "card_declined"
        payment.failure_message = decline.message if decline else "The payment was declined."
        payment.gateway_code = decline.gateway_code if decline else result.raw_status
        return PaymentStatus.FAILED, f"failed ({payment.failure_code})"

    def _status_after_error(
        self, payment: Payment, error: GatewayError
    ) -> tuple[PaymentStatus, str]:
        if isinstance(error, GatewayDeclined):
            payment.failure_code = error.decline_code
            payment.failure_message = error.message
            payment.gateway_code = error.gateway_code
            payment.next_action = None
            return PaymentStatus.FAILED, f"declined ({error.decline_code})"
        if isinstance(error, GatewayUnavailable) and error.request_sent:
            # The gateway may have acted: unknown, to be resolved by asking it.
            payment.failure_code = "outcome_unknown"
            payment.failure_message = (
                f"{error.message} The outcome is unknown until the gateway is asked."
            )
            return PaymentStatus.PROCESSING, f"outcome unknown ({error.code})"
        if payment.status == PaymentStatus.REQUIRES_ACTION and isinstance(
            error, GatewayUnavailable
        ):
            return PaymentStatus.REQUIRES_ACTION, f"gateway unreachable ({error.code})"
        code = {
            GatewayMisconfigured: "gateway_misconfigured",
            GatewayRejected: "invalid_request",
        }.get(type(error), "processing_error")
        payment.failure_code = code
        payment.failure_message = error.message
        payment.gateway_code = error.gateway_code
        payment.next_action = None
        return PaymentStatus.FAILED, f"failed ({code})"

    def _store_calls(
        self,
        session: AsyncSession,
        gateway_id: str,
        calls: list[GatewayCallRecord],
        *,
        payment_id: str | None = None,
        refund_id: str | None = None,
    ) -> None:
        for call in calls:
            session.add(
                GatewayCall(
                    id=new_id("gcl"),
                    company_id=self.caller.company_id,
                    gateway_id=gateway_id,
                    payment_id=payment_id,
                    refund_id=refund_id,
                    operation=call.operation,
                    outcome=call.outcome,
                    http_status=call.http_status,
                    latency_ms=call.latency_ms,
                    request=call.request,
                    response=call.response,
                    error=call.error,
                )
            )

    # --- refunds -----------------------------------------------------------------------

    async def refund(self, payment_id: str, request: RefundCreate) -> Refund:
        """Refund part or all of a payment; never more than paid and not yet refunded."""
        async with self.database.transaction() as session:
            payments = PaymentRepository(session, self.caller.company_id)
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
            refund = Refund(
                id=new_id("re"),
                company_id=payment.company_id,
                payment_id=payment.id,
                status="pending",
                amount=amount,
                currency=payment.currency,
                reason=request.reason,
            )
            session.add(refund)
            gateway = await session.get(Gateway, payment.gateway_id)
            assert gateway is not None
            config = payable_config(gateway, self.keyring, self.settings)
            await audit.record(
                session,
                company_id=self.caller.company_id,
                actor=self.caller.actor,
                origin=self.caller.origin,
                action="refund.created",
                object_type="payment",
                object_id=payment.id,
                detail=f"{Money(amount, payment.currency)} ({refund.id})",
            )
            refund_request = _refund_request_of(payment, refund)
        with recording_gateway_calls() as calls:
            try:
                outcome: RefundResult | GatewayError = await build_adapter(config).refund_payment(
                    refund_request
                )
            except GatewayError as exc:
                outcome = exc
        async with self.database.transaction() as session:
            payments = PaymentRepository(session, self.caller.company_id)
            payment = await payments.get(payment_id, for_update=True)
            stored = await payments.refund(refund.id, for_update=True)
            assert stored is not None
            self._store_calls(
                session, payment.gateway_id, calls, payment_id=payment.id, refund_id=stored.id
            )
            await self._settle_refund(session, payment, stored, outcome)
            return stored

    async def sync_refund(
        self, refund_id: str, *, cause: str = "synced with the gateway"
    ) -> Refund:
        """Ask the gateway what became of a pending refund (answered pending, or its call
        timed out) and settle it; a refund that is no longer pending is returned as it is."""
        # The row locks are held around the gateway call: one conversation per payment.
        async with self.database.transaction() as session:
            payments = PaymentRepository(session, self.caller.company_id)
            payment_id = await payments.payment_id_of_refund(refund_id)
            if payment_id is None:
                raise not_found("refund")
            # The order refund() locks in: the payment row, then the refund.
            payment = await payments.get(payment_id, for_update=True)
            refund = await payments.refund(refund_id, for_update=True)
            if refund is None:
                raise not_found("refund")
            if refund.status != "pending":
                return refund
            gateway = await session.get(Gateway, payment.gateway_id)
            if gateway is None:
                raise not_found("gateway")
            config = payable_config(gateway, self.keyring, self.settings)
            request = _refund_request_of(payment, refund)
            with recording_gateway_calls() as calls:
                try:
                    outcome: RefundResult | GatewayError = await build_adapter(config).fetch_refund(
                        request, refund.gateway_reference
                    )
                except GatewayError as exc:
                    outcome = exc
            self._store_calls(
                session, payment.gateway_id, calls, payment_id=payment.id, refund_id=refund.id
            )
            await self._settle_refund(session, payment, refund, outcome, asked=True, cause=cause)
            return refund

    async def _settle_refund(
        self,
        session: AsyncSession,
        payment: Payment,
        refund: Refund,
        outcome: RefundResult | GatewayError,
        *,
        asked: bool = False,
        cause: str = "the gateway answered",
    ) -> None:
        """Move a pending refund along with the gateway's answer: the refund call's own, or
        (`asked`) a later one from `sync_refund`. The payment row is locked by the caller.

        Only a pending refund moves, so a succeeded refund counts on the payment and the
        invoice exactly once, whoever settles it first. Unknown is never failed.
        """
        if refund.status != "pending":
            return  # settled meanwhile (by the refund call or a sync): the first answer stands
        refund.updated_at = utcnow()
        if isinstance(outcome, GatewayError):
            if not self._refund_error_is_final(refund, outcome, asked=asked):
                refund.failure_message = (
                    f"{outcome.message} The outcome is unknown; paygate will ask again."
                )
                self._log_refund(payment, refund, cause, f"still unknown ({outcome.code})")
                return
            refund.status = "failed"
            refund.failure_message = outcome.message
            refund.failure_code = outcome.code
            refund.gateway_code = outcome.gateway_code
            refund.failure_kind = (
                FailureKind.DECLINE
                if isinstance(outcome, GatewayDeclined)
                else FailureKind.TECHNICAL
            ).value
            self._log_refund(payment, refund, cause, f"failed ({outcome.code})")
            return
        # A definite answer replaces whatever an earlier unknown outcome said.
        refund.failure_message = None
        refund.gateway_reference = outcome.gateway_reference or refund.gateway_reference
        if (outcome.amount, outcome.currency.upper()) != (refund.amount, refund.currency):
            refund.status = "failed"
            refund.failure_code = "amount_mismatch"
            refund.failure_kind = FailureKind.TECHNICAL.value
            refund.failure_message = (
                f"The gateway answered {outcome.amount} {outcome.currency} for a refund of "
                f"{refund.amount} {refund.currency}: check it in the gateway's dashboard."
            )
            self._log_refund(payment, refund, cause, "amount or currency mismatch")
            return
        if outcome.status is GatewayRefundStatus.SUCCEEDED:
            refund.status = "succeeded"
            payment.amount_refunded += refund.amount
            payment.updated_at = utcnow()
            invoice = await PaymentRepository(session, payment.company_id).lock_invoice(
                payment.invoice_id
            )
            invoice.amount_refunded += refund.amount
            invoice.updated_at = utcnow()
        elif outcome.status is GatewayRefundStatus.FAILED:
            refund.status = "failed"
            refund.failure_code = "refund_refused"
            refund.failure_kind = FailureKind.DECLINE.value
            refund.gateway_code = outcome.raw_status or None
            refund.failure_message = "The gateway refused the refund."
        self._log_refund(payment, refund, cause, outcome.raw_status or outcome.status.value)

    @staticmethod
    def _refund_error_is_final(refund: Refund, error: GatewayError, *, asked: bool) -> bool:
        """Whether an error settles a pending refund as failed (else it stays pending)."""
        if not asked:
            # The refund call itself: only an answer that may have reached the gateway
            # leaves the outcome unknown.
            return not (isinstance(error, GatewayUnavailable) and error.request_sent)
        # Asking again: the gateway refused the refund re-issued with its key, so no refund
        # was ever made. Anything else (unreachable, bad credentials, a refund the gateway
        # cannot find) says nothing about what it did.
        return isinstance(error, GatewayRejected) and refund.gateway_reference is None

    @staticmethod
    def _log_refund(payment: Payment, refund: Refund, cause: str, reason: str) -> None:
        context = {
            "refund_id": refund.id,
            "payment_id": payment.id,
            "invoice_id": payment.invoice_id,
            "gateway_id": payment.gateway_id,
            "status": refund.status,
            "amount": refund.amount,
            "currency": refund.currency,
            "reason": f"{cause}: {reason}",
        }
        if refund.status == "failed":
            logger.warning(
                "refund_failed",
                **context,
                gateway_reference=refund.gateway_reference,
                failure_message=refund.failure_message,
            )
        else:
            logger.info("refund_settled", **context)


def _failure_kind(outcome: Outcome | RefundResult, failure_code: str | None) -> str | None:
    """Whose side a failure is on; None when nothing failed."""
    if failure_code is None:
        return None
    if isinstance(outcome, GatewayDeclined) or (
        isinstance(outcome, PaymentResult)
        and outcome.status in (GatewayPaymentStatus.FAILED, GatewayPaymentStatus.CANCELED)
    ):
        return FailureKind.DECLINE.value
    return FailureKind.TECHNICAL.value


def _refund_request_of(payment: Payment, refund: Refund) -> RefundRequest:
    """The gateway request of a refund, the same every time it is sent or asked about."""
    return RefundRequest(
        reference=refund.id,
        idempotency_key=refund.id,
        gateway_payment_reference=payment.gateway_reference or "",
        amount=refund.amount,
        currency=refund.currency,
        reason=refund.reason,
    )


def _storable_method(gateway: Gateway, method: str | None) -> str | None:
    """What of the payment method may be kept to ask the gateway again later.

    Gateway tokens are kept. A sandbox card number is kept only as the public test card
    whose behaviour it has: a real card number typed into the sandbox is never stored.
    """
    if method is None or gateway.gateway_type != GatewayType.SANDBOX:
        return method
    card = sandbox_card(method)
    return card.number if card else SANDBOX_SUCCESS_CARD.number


async def open_payment_ids(
    session: AsyncSession, older_than: timedelta, limit: int
) -> list[tuple[str, str]]:
    """(company, payment) of payments left open past `older_than`: the sweeper's work."""
    statement = (
        select(Payment.company_id, Payment.id)
        .where(
            Payment.status.in_([PaymentStatus.PROCESSING.value]),
            Payment.updated_at < utcnow() - older_than,
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
