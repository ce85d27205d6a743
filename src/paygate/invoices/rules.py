"""The invoice's status rule: the one place that derives an invoice's status from its totals."""

from __future__ import annotations

from paygate.invoices.models import Invoice
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.clock import utcnow


def follow_totals(invoice: Invoice) -> None:
    """Derive the invoice's status from what it has collected (after every payment change)."""
    if invoice.status in (InvoiceStatus.VOID, InvoiceStatus.DRAFT):
        return
    if invoice.amount_paid >= invoice.amount_total:
        invoice.status = InvoiceStatus.PAID.value
        invoice.paid_at = invoice.paid_at or utcnow()
    elif invoice.amount_paid > 0:
        invoice.status = InvoiceStatus.PARTIALLY_PAID.value
    else:
        invoice.status = InvoiceStatus.OPEN.value
    invoice.updated_at = utcnow()
