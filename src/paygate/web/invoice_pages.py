"""The invoice pages: list with filters, create with line items, detail with payments,
refunds and a timeline; finalize, void, refund and sync.

No rules live here. Invoices go through `InvoiceService`, payments and refunds through
`PaymentService` (a refund under an idempotency key, exactly like the JSON API), reads
through the repositories. The form fields become the API's shapes in invoice_forms.py;
what the detail page shows is gathered in invoice_views.py.
"""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.db import Database
from paygate.invoices.repository import InvoiceFilters, InvoiceRepository
from paygate.invoices.schemas import InvoiceStatus
from paygate.invoices.service import InvoiceService
from paygate.kit.deps import DatabaseDep, KeyringDep, SessionDep, SettingsDep
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.ids import ObjectId
from paygate.kit.money import exponent, is_currency
from paygate.kit.pagination import PageParams
from paygate.payments.endpoints import caller_of, payment_views
from paygate.payments.idempotency import Answer, request_fingerprint, run_once
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import PaymentOut, RefundCreate, RefundOut
from paygate.payments.service import PaymentService
from paygate.settings import Settings
from paygate.web.forms import FormErrors, day_range, parse, text
from paygate.web.invoice_forms import (
    MAX_LINES,
    InvoiceFormValues,
    LineValues,
    invoice_known_fields,
    invoice_labels,
    invoice_request,
    to_minor_units,
)
from paygate.web.invoice_views import STATUS_LABELS, RefundForm, detail_context, money
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 25
Short = Annotated[str, Query(max_length=320)]

# Shown once after a redirect (?notice=...): keys, never free text from the URL.
NOTICES: dict[str, tuple[str, str]] = {
    "created": ("success", "Invoice created."),
    "draft_saved": ("success", "Draft saved. Finalize it to make it payable."),
    "finalized": ("success", "Invoice finalized: the payment link now works."),
    "voided": ("info", "Invoice voided: it can no longer be paid."),
    "refunded": ("success", "Refund submitted."),
    "refund_replayed": ("info", "This refund was already submitted: nothing was refunded twice."),
    "synced": ("info", "Payment status checked with the gateway."),
}


async def _form_page(
    request: Request,
    auth: AuthContext,
    session: AsyncSession,
    values: InvoiceFormValues,
    errors: FormErrors,
    status_code: int = 200,
) -> Response:
    return render(
        request,
        "invoices/new.html",
        {
            "values": values,
            "errors": errors,
            # The number it gets if left empty, never one already used.
            "next_number": await InvoiceRepository(session, auth.company_id).next_number(),
            "currency_exponent": exponent(values.currency) if is_currency(values.currency) else 2,
        },
        auth=auth,
        status_code=status_code,
    )


# --- the list --------------------------------------------------------------------------


@router.get("/invoices")
async def invoices_page(
    request: Request,
    auth: User,
    session: SessionDep,
    status: Annotated[str, Query(max_length=20)] = "",
    customer: Short = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    await need(request, auth, Permission.INVOICES_READ)
    values = {
        "status": status.strip(),
        "customer": customer.strip(),
        "since": since.strip(),
        "until": until.strip(),
    }
    errors = FormErrors()
    if values["status"] and values["status"] not in STATUS_LABELS:
        errors.fields["status"] = ["Choose a status from the list."]
        values["status"] = ""
    since_at, until_at = day_range(values["since"], values["until"], errors)
    filters = InvoiceFilters(
        status=values["status"] or None,
        customer=values["customer"] or None,
        since=since_at,
        until=until_at,
    )
    rows, next_cursor = await InvoiceRepository(session, auth.company_id).search(
        filters, PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    )
    active = {k: v for k, v in values.items() if v}
    return render(
        request,
        "invoices/index.html",
        {
            "invoices": rows,
            "values": values,
            "errors": errors,
            "filtered": bool(active),
            "statuses": STATUS_LABELS,
            "money": money,
            "next_url": f"/invoices?{urlencode({**active, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "first_url": f"/invoices?{urlencode(active)}" if cursor else None,
        },
        auth=auth,
    )


# --- create ----------------------------------------------------------------------------


@router.get("/invoices/new")
async def new_invoice(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.INVOICES_WRITE)
    return await _form_page(request, auth, session, InvoiceFormValues(), FormErrors())


@router.post("/invoices")
async def create_invoice(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.INVOICES_WRITE)
    form = await request.form()
    values = InvoiceFormValues.from_form(form)
    intent = text(form, "intent")
    # Without JavaScript, "Add line" and "Remove" are submit buttons: show the form again.
    if intent == "add_line":
        if len(values.lines) < MAX_LINES:
            values.lines.append(LineValues())
        return await _form_page(request, auth, session, values, FormErrors())
    if intent.startswith("remove_line:"):
        index = intent.removeprefix("remove_line:")
        if index.isdigit() and int(index) < len(values.lines) and len(values.lines) > 1:
            del values.lines[int(index)]
        return await _form_page(request, auth, session, values, FormErrors())
    values.lines = [line for line in values.lines if not line.blank] or [LineValues()]
    try:
        body = invoice_request(values)
        body = body.model_copy(update={"draft": intent == "draft"})
        # A savepoint: a refused invoice leaves nothing behind.
        async with session.begin_nested():
            invoice = await InvoiceService(session, auth).create(body)
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        errors = FormErrors.from_problem(
            problem, invoice_known_fields(values), labels=invoice_labels(values)
        )
        return await _form_page(request, auth, session, values, errors, status_code=422)
    notice = "draft_saved" if invoice.status == InvoiceStatus.DRAFT else "created"
    return redirect(f"/invoices/{invoice.id}?notice={notice}", request)


# --- the detail page -------------------------------------------------------------------


async def _detail(
    request: Request,
    auth: AuthContext,
    reads: AsyncSession | Database,
    settings: Settings,
    invoice_id: ObjectId,
    *,
    notice: Notice | None = None,
    refund_form: RefundForm | None = None,
    status_code: int = 200,
) -> Response:
    """The page (or its section, for htmx). After PaymentService wrote in transactions of
    its own, pass the Database: the page is read in a fresh transaction that sees them."""
    if isinstance(reads, Database):
        async with reads.transaction() as session:
            context = await detail_context(session, settings, auth, invoice_id, refund_form)
    else:
        context = await detail_context(reads, settings, auth, invoice_id, refund_form)
    template = "invoices/_detail.html" if is_htmx(request) else "invoices/detail.html"
    return render(request, template, context, auth=auth, notice=notice, status_code=status_code)


def _done(request: Request, invoice_id: str, key: str) -> tuple[Response | None, Notice]:
    """After a change: a redirect for a plain form post, the fresh section for htmx."""
    kind, message = NOTICES[key]
    if is_htmx(request):
        return None, Notice(kind, message)
    return redirect(f"/invoices/{invoice_id}?notice={key}", request), Notice(kind, message)


@router.get("/invoices/{invoice_id}")
async def invoice_page(
    request: Request,
    invoice_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    notice: Annotated[str, Query(max_length=30)] = "",
) -> Response:
    await need(request, auth, Permission.INVOICES_READ)
    shown = Notice(*NOTICES[notice]) if notice in NOTICES else None
    return await _detail(request, auth, session, settings, invoice_id, notice=shown)


async def _invoice_action(
    request: Request,
    auth: AuthContext,
    session: AsyncSession,
    settings: Settings,
    invoice_id: ObjectId,
    action: str,
) -> Response:
    await need(request, auth, Permission.INVOICES_WRITE)
    service = InvoiceService(session, auth)
    if action == "finalize":
        await service.finalize(invoice_id)
    else:
        await service.void(invoice_id)
    response, notice = _done(request, invoice_id, "finalized" if action == "finalize" else "voided")
    if response is not None:
        return response
    # The change is flushed in this request's transaction: read the page in it too.
    return await _detail(request, auth, session, settings, invoice_id, notice=notice)


@router.post("/invoices/{invoice_id}/finalize")
async def finalize_invoice(
    request: Request,
    invoice_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    return await _invoice_action(request, auth, session, settings, invoice_id, "finalize")


@router.post("/invoices/{invoice_id}/void")
async def void_invoice(
    request: Request,
    invoice_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
) -> Response:
    return await _invoice_action(request, auth, session, settings, invoice_id, "void")


async def _payment_of_invoice(
    database: Database, auth: AuthContext, invoice_id: str, payment_id: str
) -> PaymentOut:
    """The payment, only if it belongs to this invoice of this company (else 404)."""
    async with database.transaction() as session:
        invoice = await InvoiceRepository(session, auth.company_id).get(invoice_id)
        payment = await PaymentRepository(session, auth.company_id).get(payment_id)
        if payment.invoice_id != invoice.id:
            raise Problem(404, "not-found", "Not found", "No such payment.")
        return (await payment_views(session, auth.company_id, [payment]))[0]


@router.post("/invoices/{invoice_id}/payments/{payment_id}/refund")
async def refund_payment(
    request: Request,
    invoice_id: ObjectId,
    payment_id: ObjectId,
    auth: User,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    await need(request, auth, Permission.PAYMENTS_WRITE)
    form = await request.form()
    payment = await _payment_of_invoice(database, auth, invoice_id, payment_id)
    raw_amount = text(form, "amount")
    reason = text(form, "reason").strip()
    nonce = text(form, "nonce").strip()
    try:
        if not re.fullmatch(r"[A-Za-z0-9_-]{16,64}", nonce):
            raise Problem(
                400,
                "bad-form",
                "This form has expired",
                "Reload the page and try the refund again.",
            )
        amount: int | None = None
        if raw_amount.strip():
            converted = to_minor_units(raw_amount, payment.currency)
            if isinstance(converted, str):
                raise validation_failed([FieldError("amount", converted, "bad_amount")])
            amount = converted
        body = parse(RefundCreate, {"amount": amount, "reason": reason or None})
        service = PaymentService(database, keyring, settings, caller_of(auth))

        async def operation() -> Answer:
            refund = await service.refund(payment_id, body)
            return Answer(
                201,
                RefundOut.model_validate(refund, from_attributes=True).model_dump(mode="json"),
            )

        # The form's one-time nonce is the idempotency key: a double submit refunds once.
        fingerprint = request_fingerprint(request.url.path, body.model_dump(mode="json"))
        answer = await run_once(
            database, auth.company_id, f"web-refund-{nonce}", fingerprint, operation
        )
    except Problem as problem:
        if problem.status != 422:
            raise
        errors = FormErrors.from_problem(
            problem, ["amount", "reason"], labels={"amount": "Amount", "reason": "Reason"}
        )
        refused = RefundForm(payment_id, raw_amount, reason, errors)
        return await _detail(
            request, auth, database, settings, invoice_id, refund_form=refused, status_code=422
        )
    response, notice = _done(
        request, invoice_id, "refund_replayed" if answer.replayed else "refunded"
    )
    if answer.body.get("status") == "failed" and not answer.replayed:
        notice = Notice(
            "error", f"The gateway refused the refund. {answer.body.get('failure_message') or ''}"
        )
        if response is not None:
            return redirect(f"/invoices/{invoice_id}", request)
    if response is not None:
        return response
    return await _detail(request, auth, database, settings, invoice_id, notice=notice)


@router.post("/invoices/{invoice_id}/payments/{payment_id}/sync")
async def sync_payment(
    request: Request,
    invoice_id: ObjectId,
    payment_id: ObjectId,
    auth: User,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    await need(request, auth, Permission.PAYMENTS_WRITE)
    await _payment_of_invoice(database, auth, invoice_id, payment_id)
    await PaymentService(database, keyring, settings, caller_of(auth)).sync(payment_id)
    response, notice = _done(request, invoice_id, "synced")
    if response is not None:
        return response
    return await _detail(request, auth, database, settings, invoice_id, notice=notice)
