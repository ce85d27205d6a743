"""Applying a stored event: what it says, through the one settle path.

A payment's status moves only through `settle_payment`, in the event's own transaction
(the payment and its invoice locked in one round trip), a known refund's only through
`PaymentService.report_refund` (both never move anything backwards and send a mismatched
amount or currency to review); refunds made at the gateway and disputes go through
`payments.gateway_reports`. An event about an object paygate does not know is
kept and marked `unmatched`. `processing` runs this inside a run and records it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import PaymentResult, RefundResult
from paygate.gateways.adapters.base_errors import GatewayError
from paygate.gateways.connection import adapter_config
from paygate.gateways.models import Gateway
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
from paygate.security.crypto import KeyringError
from paygate.webhooks.inbound.models import WebhookEvent
from paygate.webhooks.inbound.providers import provider_for
from paygate.webhooks.inbound.providers.base import (
    DisputeNotice,
    IgnoredNotice,
    Notice,
    ObjectRef,
    PaymentNotice,
    RefundNotice,
    parse_json_object,
)

if TYPE_CHECKING:
    from paygate.webhooks.inbound.processing import ProcessingContext

_Found = TypeVar("_Found")


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


async def apply_event(
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
