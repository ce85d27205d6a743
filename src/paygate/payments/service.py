"""Taking payments and refunds through a company's gateways: the one entry point.

Every gateway call follows one pattern, so nothing is lost when a process dies:
1. reserve (`reserve.py`): in a committed transaction, lock the invoice, check what may be
   collected, choose the gateway and write the payment in its open state;
2. call the gateway with the attempt's id as idempotency key, no database lock held;
3. settle (`settle.py`): lock the payment row and apply the answer through the one settle
   path, which moves the payment, its attempt, the invoice and records why.
A payment whose settle step never ran stays `processing`; `sync` and the sweeper (`sync.py`)
ask the gateway (with the same idempotency key) what became of it. Unknown is never failed.
Refunds (`refunds.py`) follow the same pattern under the payment's row lock.
Through the API, the client's Idempotency-Key is claimed inside step 1 and its answer stored
inside step 3 (`pay(before=..., after=...)`), so a payment costs two transactions.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import replace

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.adapters.base import PaymentResult, RefundResult
from paygate.gateways.adapters.base_errors import GatewayError
from paygate.kit.errors import conflict
from paygate.kit.writes import writes_deferred
from paygate.payments import refunds, sync
from paygate.payments.context import Caller, PaymentContext
from paygate.payments.failover import call_with_failover
from paygate.payments.models import Payment, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.reserve import PaymentInProgress, reserve_payment
from paygate.payments.schemas import PaymentCreate, RefundCreate
from paygate.payments.settle import Settled, decide, settle_payment
from paygate.payments.state import OPEN_STATUSES, PaymentStatus
from paygate.security import audit
from paygate.security.crypto import Keyring
from paygate.settings import Settings

__all__ = ["Caller", "PaymentInProgress", "PaymentService", "Settled"]


class PaymentService:
    def __init__(
        self, database: Database, keyring: Keyring, settings: Settings, caller: Caller
    ) -> None:
        self.context = PaymentContext(database, keyring, settings, caller)
        self.database = database
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
        builds and stores its answer there): two transactions per payment.
        """
        try:
            return await self._pay(invoice_id, request, cause, before, after)
        except PaymentInProgress:
            # A customer who abandoned a redirect or 3-D Secure step starts over: withdraw
            # those payments at the gateway (when it can) and try once more.
            if not await sync.withdraw_abandoned(self.context, invoice_id):
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
            reserved = await reserve_payment(self.context, session, invoice, request, cause)
            payment, attempt = reserved.payment, reserved.attempt
            # The method as typed serves this one call; the row keeps only what is storable.
            payment_request = replace(
                self.context.request_of(payment, attempt), payment_method=request.payment_method
            )
        # Routing's failover (payments/failover.py): the call, and the next gateways after a
        # technical failure, as new attempts of this payment; the last one is settled here.
        tried = await call_with_failover(self.context, reserved, request, payment_request)
        async with self.database.transaction() as session:
            payment, attempt = await PaymentRepository(
                session, self.caller.company_id
            ).lock_with_attempt(payment.id, tried.attempt_id, with_invoice=True)
            first = PaymentStatus(payment.status) in OPEN_STATUSES
            async with writes_deferred(session):
                # Settle's rows and what `after` adds (the stored answer): one statement.
                await settle_payment(
                    session, payment, attempt, tried.outcome, tried.calls, "the gateway answered"
                )
                if after is not None:
                    public_config = dict(tried.gateway.public_config or {})
                    await after(
                        Settled(
                            session,
                            payment,
                            attempt,
                            first,
                            public_config,
                            tried.failed_over,
                            reserved.opening_event,
                            tried.closed_attempts,
                            tried.failover_events,
                        )
                    )
        return payment.id

    # --- finishing ---------------------------------------------------------------------

    async def complete(self, payment_id: str, return_params: Mapping[str, str]) -> Payment:
        """The customer came back from the gateway's page or 3-D Secure: ask the gateway."""
        return await sync.complete(self.context, payment_id, return_params)

    async def sync(self, payment_id: str, *, cause: str = "synced with the gateway") -> Payment:
        """Ask the gateway what became of an open payment (after a timeout, say)."""
        return await sync.sync(self.context, payment_id, cause)

    async def report(
        self, payment_id: str, outcome: PaymentResult | GatewayError, *, cause: str
    ) -> Payment:
        """The gateway told paygate what became of a payment (a webhook)."""
        return await sync.report(self.context, payment_id, outcome, cause)

    async def review(self, payment_id: str, outcome: PaymentStatus, note: str) -> Payment:
        """A person decides a payment whose gateway answer did not match what was asked."""
        async with self.database.transaction() as session:
            payment = await PaymentRepository(session, self.caller.company_id).get(
                payment_id, for_update=True
            )
            if payment.status != PaymentStatus.REQUIRES_REVIEW:
                raise conflict("Only a payment in review can be decided.")
            who = self.caller.actor.label or self.caller.actor.id or "a reviewer"
            await decide(session, payment, outcome, f"reviewed by {who}: {note}")
            await audit.record_by(
                session,
                self.caller,
                action="payment.reviewed",
                object_type="payment",
                object_id=payment.id,
                changes={"status": {"before": "requires_review", "after": outcome.value}},
                detail=note,
            )
            return payment

    # --- refunds -----------------------------------------------------------------------

    async def refund(self, payment_id: str, request: RefundCreate) -> Refund:
        """Refund part or all of a payment; never more than paid and not yet refunded."""
        return await refunds.refund(self.context, payment_id, request)

    async def sync_refund(
        self, refund_id: str, *, cause: str = "synced with the gateway"
    ) -> Refund:
        """Ask the gateway what became of a pending refund and settle it."""
        return await refunds.sync_refund(self.context, refund_id, cause)

    async def report_refund(
        self, refund_id: str, outcome: RefundResult | GatewayError, *, cause: str
    ) -> Refund:
        """The gateway told paygate what became of a refund (a webhook)."""
        return await refunds.report_refund(self.context, refund_id, outcome, cause)
