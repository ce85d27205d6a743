"""Invoices: create with computed totals, finalize, void, and follow payments and refunds."""

from __future__ import annotations

import secrets

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.invoices.models import Invoice, InvoiceLine
from paygate.invoices.repository import InvoiceRepository
from paygate.invoices.rules import follow_totals
from paygate.invoices.schemas import InvoiceCreate, InvoiceStatus
from paygate.kit.clock import utcnow
from paygate.kit.countries import is_country
from paygate.kit.errors import FieldError, conflict, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import is_currency
from paygate.security import audit
from paygate.security.audit_actions import AuditAction

MAX_TOTAL = 10**15


class InvoiceService:
    def __init__(self, session: AsyncSession, auth: AuthContext) -> None:
        self.session = session
        self.auth = auth
        self.invoices = InvoiceRepository(session, auth.company_id)

    async def create(self, request: InvoiceCreate) -> Invoice:
        currency = request.currency.upper()
        if not is_currency(currency):
            raise validation_failed(
                [FieldError("currency", "is not an ISO 4217 currency code", "unsupported_currency")]
            )
        country = request.customer.country
        if country is not None and not is_country(country):
            raise validation_failed(
                [FieldError("customer.country", "is not an ISO 3166 country code", "unknown")]
            )
        lines = [
            InvoiceLine(
                id=new_id("li"),
                position=index,
                description=item.description,
                quantity=item.quantity,
                unit_amount=item.unit_amount,
                amount=item.quantity * item.unit_amount,
            )
            for index, item in enumerate(request.line_items)
        ]
        total = sum(line.amount for line in lines)
        if total > MAX_TOTAL:
            raise validation_failed(
                [FieldError("line_items", "the total is too large", "too_large")]
            )
        if total == 0:
            raise validation_failed(
                [FieldError("line_items", "the total must be more than zero", "zero_total")]
            )
        for _attempt in range(5):
            invoice = Invoice(
                id=new_id("inv"),
                company_id=self.auth.company_id,
                # Read again on every attempt: another request may have taken the number.
                number=request.number or await self.invoices.next_number(),
                status=(InvoiceStatus.DRAFT if request.draft else InvoiceStatus.OPEN).value,
                customer_name=request.customer.name,
                customer_email=request.customer.email.lower(),
                customer_country=request.customer.country,
                meta=dict(request.metadata),
                currency=currency,
                amount_total=total,
                amount_paid=0,
                amount_refunded=0,
                due_date=request.due_date,
                memo=request.memo,
                allow_partial_payments=request.allow_partial_payments,
                pay_token=secrets.token_urlsafe(32),
                lines=lines,
            )
            try:
                async with self.session.begin_nested():
                    await self.invoices.add(invoice)
                break
            except IntegrityError:
                if request.number:
                    raise conflict(
                        f"An invoice numbered {request.number} already exists."
                    ) from None
        else:
            raise conflict("Could not number the invoice; try again.")
        await self._audit(
            "invoice.created", invoice, changes={"amount_total": {"before": None, "after": total}}
        )
        return invoice

    async def finalize(self, invoice_id: str) -> Invoice:
        invoice = await self.invoices.get(invoice_id, for_update=True)
        if invoice.status != InvoiceStatus.DRAFT:
            raise conflict("Only a draft invoice can be finalized.")
        invoice.status = InvoiceStatus.OPEN.value
        follow_totals(invoice)
        await self._audit("invoice.finalized", invoice)
        return invoice

    async def void(self, invoice_id: str) -> Invoice:
        invoice = await self.invoices.get(invoice_id, for_update=True)
        if invoice.status == InvoiceStatus.VOID:
            return invoice
        if invoice.amount_paid > invoice.amount_refunded:
            raise conflict("An invoice with payments cannot be voided; refund the payments first.")
        if await self.invoices.open_payment_count(invoice):
            raise conflict("A payment for this invoice is in progress; wait for it to finish.")
        before = invoice.status
        invoice.status = InvoiceStatus.VOID.value
        invoice.voided_at = utcnow()
        invoice.updated_at = utcnow()
        await self.session.flush()
        await self._audit(
            "invoice.voided", invoice, changes={"status": {"before": before, "after": "void"}}
        )
        return invoice

    async def _audit(self, action: AuditAction, invoice: Invoice, **fields: object) -> None:
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type="invoice",
            object_id=invoice.id,
            object_name=invoice.number,
            **fields,  # type: ignore[arg-type]
        )
