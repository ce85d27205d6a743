"""Where events come from: the settle path's `payment_settled` (connected here, at import),
gateway health monitoring's `gateway_status_changed` (`on_gateway_status_changed`) and
inbound webhooks' `payment_disputed` (`on_payment_disputed`); the last two are connected
where those signals live once they are on main.

Each listener runs inside the transaction of the change, so the deliveries it writes (and
their jobs) commit with the change or not at all. Bodies are built from an allow-list of
fields: ids, amounts, statuses and codes; never a payment method or a secret.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.invoices.models import Invoice
from paygate.payments.models import Payment
from paygate.payments.signals import PaymentChange, payment_settled
from paygate.webhooks.outbound.enqueue import enqueue_event
from paygate.webhooks.outbound.events import EventType
from paygate.webhooks.outbound.repository import EndpointRepository


def payment_data(change: PaymentChange) -> dict[str, Any]:
    return {
        "id": change.payment_id,
        "invoice_id": change.invoice_id,
        "gateway_id": change.gateway_id,
        "status": change.to_status,
        "previous_status": change.from_status,
        "amount": change.amount,
        "currency": change.currency,
        "failure_code": change.failure_code,
        "failure_kind": change.failure_kind,
        "occurred_at": change.occurred_at,
    }


def refund_data(change: PaymentChange) -> dict[str, Any]:
    return {
        "id": change.refund_id,
        "payment_id": change.payment_id,
        "invoice_id": change.invoice_id,
        "gateway_id": change.gateway_id,
        "status": change.to_status,
        "amount": change.amount,
        "currency": change.currency,
        "failure_code": change.failure_code,
        "failure_kind": change.failure_kind,
        "occurred_at": change.occurred_at,
    }


def refunded_data(change: PaymentChange, payment: Payment | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": change.payment_id,
        "invoice_id": change.invoice_id,
        "gateway_id": change.gateway_id,
        "currency": change.currency,
        "refund": {"id": change.refund_id, "amount": change.amount},
        "occurred_at": change.occurred_at,
    }
    if payment is not None:
        data["amount"] = payment.amount
        data["amount_refunded"] = payment.amount_refunded
        data["fully_refunded"] = payment.amount_refunded >= payment.amount
    return data


def invoice_data(change: PaymentChange, invoice: Invoice | None) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": change.invoice_id,
        "payment_id": change.payment_id,
        "currency": change.currency,
        "paid_at": change.occurred_at,
    }
    if invoice is not None:
        data.update(
            number=invoice.number,
            amount_total=invoice.amount_total,
            amount_paid=invoice.amount_paid,
            paid_at=invoice.paid_at or change.occurred_at,
        )
    return data


async def events_of_payment_change(
    session: AsyncSession, change: PaymentChange
) -> list[tuple[EventType, dict[str, Any]]]:
    """The events one settled change means, in the order they happened."""
    if change.kind == "payment":
        events: list[tuple[EventType, dict[str, Any]]] = []
        if change.to_status == "succeeded":
            events.append((EventType.PAYMENT_SUCCEEDED, payment_data(change)))
        elif change.to_status == "failed":
            events.append((EventType.PAYMENT_FAILED, payment_data(change)))
        if change.invoice_paid:
            # The invoice row is locked and loaded by the settle path: no query is made.
            invoice = await session.get(Invoice, change.invoice_id)
            events.append((EventType.INVOICE_PAID, invoice_data(change, invoice)))
        return events
    if change.to_status == "succeeded":
        payment = await session.get(Payment, change.payment_id)
        return [
            (EventType.REFUND_SUCCEEDED, refund_data(change)),
            (EventType.PAYMENT_REFUNDED, refunded_data(change, payment)),
        ]
    if change.to_status == "failed":
        return [(EventType.REFUND_FAILED, refund_data(change))]
    return []


@payment_settled.connect
async def on_payment_settled(session: AsyncSession, change: PaymentChange) -> None:
    # One read for the whole change, before any body is built: on the payment path, and
    # most companies have no endpoint.
    endpoints = await EndpointRepository(session, change.company_id).enabled()
    if not endpoints:
        return
    for event_type, data in await events_of_payment_change(session, change):
        await enqueue_event(
            session,
            change.company_id,
            event_type,
            data,
            occurred_at=change.occurred_at,
            endpoints=endpoints,
        )


class GatewayStatusChange(Protocol):
    """What monitoring's `gateway_status_changed` carries (monitoring/signals.py)."""

    @property
    def company_id(self) -> str: ...
    @property
    def gateway_id(self) -> str: ...
    @property
    def gateway_name(self) -> str: ...
    @property
    def gateway_type(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def event(self) -> str: ...
    @property
    def from_status(self) -> str: ...
    @property
    def to_status(self) -> str: ...
    @property
    def incident_id(self) -> str: ...
    @property
    def cause(self) -> str: ...
    @property
    def started_at(self) -> datetime: ...
    @property
    def ended_at(self) -> datetime | None: ...
    @property
    def duration_seconds(self) -> int | None: ...
    @property
    def occurred_at(self) -> datetime: ...


def gateway_data(change: GatewayStatusChange) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": change.gateway_id,
        "name": change.gateway_name,
        "gateway_type": change.gateway_type,
        "environment": change.environment,
        "status": change.to_status,
        "previous_status": change.from_status,
        "incident_id": change.incident_id,
        "cause": change.cause,
        "down_since": change.started_at,
    }
    if change.event == EventType.GATEWAY_UP.value:
        data["up_since"] = change.ended_at
        data["downtime_seconds"] = change.duration_seconds
    return data


async def on_gateway_status_changed(session: AsyncSession, change: GatewayStatusChange) -> None:
    """gateway.down / gateway.up; connected where monitoring's signal is importable:
    `gateway_status_changed.connect(on_gateway_status_changed)`."""
    await enqueue_event(
        session,
        change.company_id,
        EventType(change.event),
        gateway_data(change),
        occurred_at=change.occurred_at,
    )


class DisputeChange(Protocol):
    """What inbound processing's `payments.gateway_reports.payment_disputed` carries."""

    @property
    def company_id(self) -> str: ...
    @property
    def payment_id(self) -> str: ...
    @property
    def invoice_id(self) -> str: ...
    @property
    def gateway_id(self) -> str: ...
    @property
    def dispute_reference(self) -> str: ...
    @property
    def from_status(self) -> str | None: ...
    @property
    def to_status(self) -> str: ...
    @property
    def amount(self) -> int: ...
    @property
    def currency(self) -> str: ...
    @property
    def reason(self) -> str | None: ...
    @property
    def occurred_at(self) -> datetime: ...


def dispute_data(change: DisputeChange) -> dict[str, Any]:
    return {
        "id": change.payment_id,
        "invoice_id": change.invoice_id,
        "gateway_id": change.gateway_id,
        "dispute": {
            "reference": change.dispute_reference,
            "status": change.to_status,
            "previous_status": change.from_status,
            "amount": change.amount,
            "currency": change.currency,
            "reason": change.reason,
        },
        "occurred_at": change.occurred_at,
    }


async def on_payment_disputed(session: AsyncSession, change: DisputeChange) -> None:
    """payment.disputed, when a dispute opens and when it is won or lost (`data.dispute
    .status`); connected where the signal is importable:
    `payment_disputed.connect(on_payment_disputed)`."""
    await enqueue_event(
        session,
        change.company_id,
        EventType.PAYMENT_DISPUTED,
        dispute_data(change),
        occurred_at=change.occurred_at,
    )


def _connect_other_sources() -> None:
    """Health monitoring's and inbound webhooks' signals (imported here, not at the top,
    so the Protocols above stay the one description of what each listener reads)."""
    from paygate.monitoring.signals import gateway_status_changed
    from paygate.payments.gateway_reports import payment_disputed

    gateway_status_changed.connect(on_gateway_status_changed)
    payment_disputed.connect(on_payment_disputed)


_connect_other_sources()
