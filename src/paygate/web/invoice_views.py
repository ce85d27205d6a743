"""What the invoice pages show: status and payment labels, amounts as money, and the detail
page's context (its payments with what each may still refund, and one timeline of the
invoice's audit entries, its payments' events and its refunds)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.endpoints import pay_url
from paygate.invoices.models import Invoice
from paygate.invoices.repository import InvoiceRepository
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.ids import ObjectId
from paygate.kit.money import Money, is_currency
from paygate.kit.pagination import PageParams
from paygate.payments.endpoints import payment_views
from paygate.payments.gateway_reports import dispute_marks
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import PaymentOut
from paygate.payments.state import OPEN_STATUSES, PaymentStatus
from paygate.security.models import AuditEntry
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.settings import Settings
from paygate.web.forms import FormErrors
from paygate.web.invoice_forms import minor_to_input

STATUS_LABELS = {
    "draft": "Draft",
    "open": "Open",
    "partially_paid": "Partially paid",
    "paid": "Paid",
    "void": "Void",
}
PAYMENT_LABELS = {
    "processing": "Processing",
    "requires_action": "Action required",
    "succeeded": "Succeeded",
    "failed": "Failed",
    "canceled": "Canceled",
    "requires_review": "In review",
    "pending": "Pending",
}


def money(amount: int, currency: str) -> str:
    if is_currency(currency):
        return Money(amount, currency).format()
    return f"{amount:,} {currency}"


@dataclass(frozen=True)
class TimelineItem:
    at: datetime
    kind: str  # payment, refund, invoice
    title: str
    detail: str
    actor: str
    tone: str  # success, danger, warning, info, neutral


@dataclass
class PaymentRow:
    payment: PaymentOut
    gateway_name: str
    refundable: int
    nonce: str
    can_sync: bool


@dataclass
class RefundForm:
    """A refused refund: shown again under its payment with the error inline."""

    payment_id: str
    amount: str
    reason: str
    errors: FormErrors


def _audit_title(entry: AuditEntry) -> str:
    titles = {
        "invoice.created": "Invoice created",
        "invoice.finalized": "Invoice finalized",
        "invoice.voided": "Invoice voided",
    }
    return titles.get(entry.action, entry.action)


def _tone(status: str) -> str:
    return {
        "succeeded": "success",
        "failed": "danger",
        "canceled": "neutral",
        "requires_review": "warning",
        "requires_action": "warning",
        "processing": "info",
        "pending": "info",
    }.get(status, "neutral")


def timeline(
    invoice: Invoice, payments: Sequence[PaymentOut], audit: Sequence[AuditEntry]
) -> list[TimelineItem]:
    items: list[TimelineItem] = []
    for entry in audit:
        items.append(
            TimelineItem(
                entry.occurred_at,
                "invoice",
                _audit_title(entry),
                entry.detail or "",
                entry.actor_label or entry.actor_type,
                "danger" if entry.action == "invoice.voided" else "neutral",
            )
        )
    for payment in payments:
        amount = money(payment.amount, payment.currency)
        for event in payment.events:
            label = PAYMENT_LABELS.get(event.to_status, event.to_status)
            title = (
                f"Payment of {amount} started ({label.lower()})"
                if event.from_status is None
                else f"Payment of {amount}: {label.lower()}"
            )
            items.append(
                TimelineItem(
                    event.occurred_at,
                    "payment",
                    title,
                    event.cause,
                    payment.id,
                    _tone(event.to_status),
                )
            )
        for refund in payment.refunds:
            detail = refund.reason or ""
            if refund.failure_message:
                detail = f"{detail} {refund.failure_message}".strip()
            items.append(
                TimelineItem(
                    refund.created_at,
                    "refund",
                    f"Refund of {money(refund.amount, refund.currency)}: "
                    f"{PAYMENT_LABELS.get(refund.status, refund.status).lower()}",
                    detail,
                    refund.id,
                    "warning" if refund.status == "succeeded" else _tone(refund.status),
                )
            )
    items.sort(key=lambda item: item.at)
    return items


async def detail_context(
    session: AsyncSession,
    settings: Settings,
    auth: AuthContext,
    invoice_id: ObjectId,
    refund_form: RefundForm | None = None,
) -> dict[str, Any]:
    """Everything the detail page shows."""
    invoice = await InvoiceRepository(session, auth.company_id).get(invoice_id)
    payments_repo = PaymentRepository(session, auth.company_id)
    rows = await payments_repo.of_invoice(invoice.id)
    views = await payment_views(session, auth.company_id, rows)
    pending = {p.id: await payments_repo.pending_refund_amount(p.id) for p in rows}
    gateways = {g.id: g.name for g in await GatewayRepository(session, auth.company_id).listing()}
    audit, _ = await AuditRepository(session, auth.company_id).search(
        AuditFilters(object_type="invoice", object_id=invoice.id), PageParams(limit=200)
    )
    payments = [
        PaymentRow(
            payment=view,
            gateway_name=gateways.get(view.gateway_id, view.gateway_id),
            refundable=max(view.amount - view.amount_refunded - pending[view.id], 0)
            if view.status == PaymentStatus.SUCCEEDED
            else 0,
            nonce=secrets.token_urlsafe(24),
            can_sync=view.status in OPEN_STATUSES,
        )
        for view in reversed(views)
    ]
    status = invoice.status
    return {
        "invoice": invoice,
        "status_label": STATUS_LABELS.get(status, status),
        "pay_url": pay_url(settings, invoice),
        "payments": payments,
        "gateway_names": gateways,
        "timeline": list(reversed(timeline(invoice, views, audit))),
        "can_write": auth.can(Permission.INVOICES_WRITE),
        "can_pay_write": auth.can(Permission.PAYMENTS_WRITE),
        "can_finalize": status == InvoiceStatus.DRAFT,
        # The service decides (open payments refuse it too); this only hides a sure refusal.
        "can_void": status != InvoiceStatus.VOID and invoice.amount_paid <= invoice.amount_refunded,
        "money": money,
        "payment_labels": PAYMENT_LABELS,
        # The disputed mark a gateway's webhook set (payments/gateway_reports.py).
        "disputes": await dispute_marks(session, auth.company_id, [p.id for p in rows]),
        "refund_form": refund_form,
        "minor_to_input": minor_to_input,
    }
