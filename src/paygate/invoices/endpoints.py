"""The invoices JSON API."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.invoices.models import Invoice
from paygate.invoices.repository import InvoiceFilters, InvoiceRepository
from paygate.invoices.schemas import (
    Customer,
    InvoiceCreate,
    InvoiceOut,
    InvoicePage,
    InvoiceStatus,
    LineItemOut,
)
from paygate.invoices.service import InvoiceService
from paygate.kit.deps import SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.settings import Settings

router = APIRouter(prefix="/api/v1", tags=["invoices"], responses=PROBLEM_RESPONSES)

Reader = Annotated[AuthContext, Depends(require(Permission.INVOICES_READ))]
Writer = Annotated[AuthContext, Depends(require(Permission.INVOICES_WRITE))]


def pay_url(settings: Settings, invoice: Invoice) -> str:
    return f"{settings.base_url}/pay/{invoice.pay_token}"


def invoice_out(invoice: Invoice, settings: Settings) -> InvoiceOut:
    return InvoiceOut(
        id=invoice.id,
        number=invoice.number,
        status=InvoiceStatus(invoice.status),
        customer=Customer(
            name=invoice.customer_name,
            email=invoice.customer_email,
            country=invoice.customer_country,
        ),
        currency=invoice.currency,
        line_items=[
            LineItemOut(
                description=line.description,
                quantity=line.quantity,
                unit_amount=line.unit_amount,
                amount=line.amount,
            )
            for line in invoice.lines
        ],
        amount_total=invoice.amount_total,
        amount_paid=invoice.amount_paid,
        amount_refunded=invoice.amount_refunded,
        amount_due=invoice.amount_due,
        due_date=invoice.due_date,
        memo=invoice.memo,
        allow_partial_payments=invoice.allow_partial_payments,
        metadata=dict(invoice.meta or {}),
        pay_url=pay_url(settings, invoice),
        created_at=invoice.created_at,
        updated_at=invoice.updated_at,
        paid_at=invoice.paid_at,
        voided_at=invoice.voided_at,
    )


def invoice_filters(
    status: Annotated[InvoiceStatus | None, Query()] = None,
    customer: Annotated[str | None, Query(max_length=320, description="Customer email")] = None,
    since: Annotated[datetime | None, Query()] = None,
    until: Annotated[datetime | None, Query()] = None,
) -> InvoiceFilters:
    return InvoiceFilters(status.value if status else None, customer, since, until)


@router.post("/invoices", status_code=status.HTTP_201_CREATED, response_model=InvoiceOut)
async def create_invoice(
    body: InvoiceCreate, auth: Writer, session: SessionDep, settings: SettingsDep
) -> InvoiceOut:
    return invoice_out(await InvoiceService(session, auth).create(body), settings)


@router.get("/invoices", response_model=InvoicePage)
async def list_invoices(
    auth: Reader,
    session: SessionDep,
    settings: SettingsDep,
    filters: Annotated[InvoiceFilters, Depends(invoice_filters)],
    paging: Annotated[PageParams, Depends(page_params)],
) -> InvoicePage:
    rows, cursor = await InvoiceRepository(session, auth.company_id).search(filters, paging)
    return InvoicePage(
        data=[invoice_out(i, settings) for i in rows],
        has_more=cursor is not None,
        next_cursor=cursor,
    )


@router.get("/invoices/{invoice_id}", response_model=InvoiceOut)
async def get_invoice(
    invoice_id: ObjectId, auth: Reader, session: SessionDep, settings: SettingsDep
) -> InvoiceOut:
    return invoice_out(await InvoiceRepository(session, auth.company_id).get(invoice_id), settings)


@router.post("/invoices/{invoice_id}/finalize", response_model=InvoiceOut)
async def finalize_invoice(
    invoice_id: ObjectId, auth: Writer, session: SessionDep, settings: SettingsDep
) -> InvoiceOut:
    return invoice_out(await InvoiceService(session, auth).finalize(invoice_id), settings)


@router.post("/invoices/{invoice_id}/void", response_model=InvoiceOut)
async def void_invoice(
    invoice_id: ObjectId, auth: Writer, session: SessionDep, settings: SettingsDep
) -> InvoiceOut:
    return invoice_out(await InvoiceService(session, auth).void(invoice_id), settings)
