"""The invoice pages: list with filters, create with line items, detail with payments,
refunds and a timeline; finalize, void, refund and sync.

No rules live here. Invoices go through `InvoiceService`, payments and refunds through
`PaymentService` (a refund under an idempotency key, exactly like the JSON API), reads
through the repositories. This module only turns form fields into the API's shapes
(amounts typed as 12.50 become integers in the currency's minor unit) and back.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.db import Database
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.endpoints import pay_url
from paygate.invoices.models import Invoice
from paygate.invoices.repository import InvoiceFilters, InvoiceRepository
from paygate.invoices.schemas import InvoiceCreate, InvoiceStatus
from paygate.invoices.service import InvoiceService
from paygate.kit.deps import DatabaseDep, KeyringDep, SessionDep, SettingsDep
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.ids import ObjectId
from paygate.kit.money import Money, exponent, is_currency
from paygate.kit.pagination import PageParams
from paygate.payments.endpoints import caller_of, payment_views
from paygate.payments.gateway_reports import dispute_marks
from paygate.payments.idempotency import Answer, request_fingerprint, run_once
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import PaymentOut, RefundCreate, RefundOut
from paygate.payments.service import PaymentService
from paygate.payments.state import OPEN_STATUSES, PaymentStatus
from paygate.security.models import AuditEntry
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.settings import Settings
from paygate.web.forms import FormErrors, day_range, parse, text, texts
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 25
MAX_LINES = 100
Short = Annotated[str, Query(max_length=320)]

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

LINE_LABELS = {"description": "Description", "quantity": "Quantity", "unit_amount": "Unit price"}
INVOICE_LABELS = {
    "customer.name": "Customer name",
    "customer.email": "Customer email",
    "currency": "Currency",
    "due_date": "Due date",
    "memo": "Memo",
    "number": "Invoice number",
    "line_items": "Line items",
    "allow_partial_payments": "Partial payments",
}


def money(amount: int, currency: str) -> str:
    if is_currency(currency):
        return Money(amount, currency).format()
    return f"{amount:,} {currency}"


# --- amounts typed by people -------------------------------------------------------------

AMOUNT = re.compile(r"\d{1,15}(\.\d*)?|\.\d+")


def to_minor_units(raw: str, currency: str | None) -> int | str:
    """12.50 USD -> 1250, 1200 JPY -> 1200; a message (str) when it cannot be read.

    `currency` None (not a known code) checks only that it is a number.
    """
    cleaned = raw.strip().replace(",", "").replace(" ", "")
    if not cleaned:
        return "is required"
    if not AMOUNT.fullmatch(cleaned):
        return "must be an amount like 12.50"
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        return "must be an amount like 12.50"
    if currency is None:
        return int(value.scaleb(2).to_integral_value())
    digits = exponent(currency)
    scaled = value.scaleb(digits)
    if scaled != scaled.to_integral_value():
        if digits == 0:
            return f"must be a whole number: {currency} has no decimals"
        return f"may have at most {digits} decimals in {currency}"
    return int(scaled)


def minor_to_input(amount: int, currency: str) -> str:
    """The other way, for a form shown again: 1250 USD -> 12.50."""
    digits = exponent(currency) if is_currency(currency) else 2
    return f"{Decimal(amount).scaleb(-digits):.{digits}f}"


# --- the new-invoice form -------------------------------------------------------------


@dataclass
class LineValues:
    description: str = ""
    quantity: str = "1"
    unit_price: str = ""

    @property
    def blank(self) -> bool:
        return not (self.description.strip() or self.unit_price.strip()) and (
            self.quantity.strip() in ("", "1")
        )


@dataclass
class InvoiceFormValues:
    customer_name: str = ""
    customer_email: str = ""
    currency: str = "USD"
    due_date: str = ""
    memo: str = ""
    number: str = ""
    allow_partial_payments: bool = False
    lines: list[LineValues] = field(default_factory=lambda: [LineValues()])

    @classmethod
    def from_form(cls, form: FormData) -> InvoiceFormValues:
        descriptions = texts(form, "line_description")
        quantities = texts(form, "line_quantity")
        prices = texts(form, "line_unit_price")
        count = min(max(len(descriptions), len(quantities), len(prices)), MAX_LINES + 1)

        def at(values: list[str], index: int, default: str = "") -> str:
            return values[index] if index < len(values) else default

        lines = [
            LineValues(at(descriptions, i), at(quantities, i, "1"), at(prices, i))
            for i in range(count)
        ]
        return cls(
            customer_name=text(form, "customer.name"),
            customer_email=text(form, "customer.email"),
            currency=text(form, "currency").strip().upper(),
            due_date=text(form, "due_date").strip(),
            memo=text(form, "memo"),
            number=text(form, "number"),
            allow_partial_payments=text(form, "allow_partial_payments") == "on",
            lines=lines,
        )


def _quantity(raw: str) -> int | str:
    raw = raw.strip().replace(",", "")
    return int(raw) if re.fullmatch(r"\d{1,9}", raw) else raw


FRIENDLY = {
    "missing": "is required",
    "string_too_short": "is required",
    "string_too_long": "is too long",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "date_from_datetime_parsing": "must be a date (YYYY-MM-DD)",
    "date_parsing": "must be a date (YYYY-MM-DD)",
    "date_type": "must be a date (YYYY-MM-DD)",
}


def _friendly(error: FieldError) -> FieldError:
    """Pydantic's wording, said the way the rest of the page speaks."""
    message = FRIENDLY.get(error.code)
    if error.field == "customer.email" and error.code in ("value_error", "string_too_long"):
        message = "is not a valid email address"
    elif error.field.endswith(".quantity") and error.code.startswith(("greater", "less")):
        message = "must be between 1 and 1,000,000"
    elif error.field.endswith(".unit_amount") and error.code.startswith(("greater", "less")):
        message = "is out of range"
    elif error.field == "line_items" and error.code == "too_short":
        message = "Add at least one line."
    elif error.field == "line_items" and error.code == "too_long":
        message = f"An invoice has at most {MAX_LINES} lines."
    return FieldError(error.field, message or error.message, error.code)


def invoice_request(values: InvoiceFormValues) -> InvoiceCreate:
    """The API's InvoiceCreate from the form; a Problem with every field error at once."""
    currency = values.currency or ""
    known = currency if is_currency(currency) else None
    lines = [line for line in values.lines if not line.blank]
    own: list[FieldError] = []
    if currency and known is None:
        # The service says the same; said here too so every error shows at once.
        own.append(FieldError("currency", "is not an ISO 4217 currency code", "unsupported"))
    items: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        amount = to_minor_units(line.unit_price, known)
        if isinstance(amount, str):
            own.append(FieldError(f"line_items.{index}.unit_amount", amount, "bad_amount"))
            amount = 0
        items.append(
            {
                "description": line.description,
                "quantity": _quantity(line.quantity),
                "unit_amount": amount,
            }
        )
    if values.due_date:
        try:
            date.fromisoformat(values.due_date)
        except ValueError:
            own.append(FieldError("due_date", "must be a date (YYYY-MM-DD)", "date_parsing"))
    data: dict[str, Any] = {
        "customer": {"name": values.customer_name, "email": values.customer_email.strip()},
        "currency": currency,
        "line_items": items,
        "due_date": values.due_date or None,
        "memo": values.memo.strip() or None,
        "number": values.number.strip() or None,
        "allow_partial_payments": values.allow_partial_payments,
        "draft": True,
    }
    if own:
        data["due_date"] = None if any(e.field == "due_date" for e in own) else data["due_date"]
    try:
        request = parse(InvoiceCreate, data)
    except Problem as problem:
        mine = {e.field for e in own}
        errors = own + [_friendly(e) for e in problem.errors if e.field not in mine]
        raise validation_failed(errors) from None
    if own:
        raise validation_failed(own)
    return request


def invoice_known_fields(values: InvoiceFormValues) -> list[str]:
    names = list(INVOICE_LABELS)
    for index in range(len(values.lines)):
        names.extend(f"line_items.{index}.{name}" for name in LINE_LABELS)
    return names


def invoice_labels(values: InvoiceFormValues) -> dict[str, str]:
    labels = dict(INVOICE_LABELS)
    for index in range(len(values.lines)):
        for name, label in LINE_LABELS.items():
            labels[f"line_items.{index}.{name}"] = label
    return labels


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
