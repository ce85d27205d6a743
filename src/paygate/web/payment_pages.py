"""The payments page: every payment with filters and cursor paging, its CSV export, and the
review queue, decided on the page (through PaymentService.review, which audits it)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse

from paygate.accounts.permissions import Permission
from paygate.db import Database
from paygate.gateways.repository import GatewayRepository
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, KeyringDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.kit.money import exponent, is_currency
from paygate.kit.pagination import PageParams
from paygate.payments.endpoints import caller_of
from paygate.payments.listing import PaymentLine, PaymentListing, PaymentQuery
from paygate.payments.schemas import ReviewDecision
from paygate.payments.service import PaymentService
from paygate.payments.state import PaymentStatus
from paygate.web.forms import FormErrors, day_range, parse, text
from paygate.web.invoice_forms import to_minor_units
from paygate.web.invoice_views import PAYMENT_LABELS, money
from paygate.web.render import Notice, PageRoute, redirect, render
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 25
REVIEW_QUEUE_SIZE = 20
Short = Annotated[str, Query(max_length=40)]
FILTERS = (
    "q",
    "status",
    "gateway",
    "method",
    "currency",
    "amount_min",
    "amount_max",
    "since",
    "until",
)


@dataclass(frozen=True)
class Filters:
    values: dict[str, str]  # as typed, shown again in the form
    query: PaymentQuery
    errors: FormErrors

    @property
    def active(self) -> dict[str, str]:
        return {k: v for k, v in self.values.items() if v}


def read_filters(raw: dict[str, str]) -> Filters:
    """The filter form's fields as a PaymentQuery; a bad field is an error and no filter."""
    values = {name: raw.get(name, "").strip() for name in FILTERS}
    errors = FormErrors()
    status = None
    if values["status"]:
        try:
            status = PaymentStatus(values["status"])
        except ValueError:
            errors.fields["status"] = ["Choose a status from the list."]
    currency = values["currency"].upper() or None
    if currency is not None and not is_currency(currency):
        errors.fields["currency"] = ["Choose a currency from the list."]
        currency = None
    amounts: dict[str, int | None] = {"amount_min": None, "amount_max": None}
    for name in amounts:
        if not values[name]:
            continue
        if currency is None:
            errors.fields[name] = ["Choose a currency to filter by amount."]
            continue
        parsed = to_minor_units(values[name], currency)
        if isinstance(parsed, str):
            errors.fields[name] = [f"The amount {parsed}."]
        else:
            amounts[name] = parsed
    since, until = day_range(values["since"], values["until"], errors)
    query = PaymentQuery(
        gateway_id=values["gateway"] or None,
        status=status,
        method=values["method"] or None,
        currency=currency,
        since=since,
        until=until,
        amount_min=amounts["amount_min"],
        amount_max=amounts["amount_max"],
        search=values["q"] or None,
    )
    return Filters(values, query, errors)


def _filter_params(
    q: Annotated[str, Query(max_length=320)] = "",
    status: Short = "",
    gateway: Short = "",
    method: Short = "",
    currency: Short = "",
    amount_min: Short = "",
    amount_max: Short = "",
    since: Short = "",
    until: Short = "",
) -> dict[str, str]:
    return {
        "q": q,
        "status": status,
        "gateway": gateway,
        "method": method,
        "currency": currency,
        "amount_min": amount_min,
        "amount_max": amount_max,
        "since": since,
        "until": until,
    }


# The page and its CSV export take the same filters from the query string.
FilterParams = Annotated[dict[str, str], Depends(_filter_params)]


@router.get("/payments")
async def payments_page(
    request: Request,
    auth: User,
    session: SessionDep,
    params: FilterParams,
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    await need(request, auth, Permission.PAYMENTS_READ)
    filters = read_filters(params)
    listing = PaymentListing(session, auth.company_id)
    lines, next_cursor = await listing.page(
        filters.query, PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    )
    in_review, _ = await listing.page(
        PaymentQuery(status=PaymentStatus.REQUIRES_REVIEW), PageParams(limit=REVIEW_QUEUE_SIZE)
    )
    return await _render_page(
        request, auth, session, filters, lines, next_cursor, cursor, list(in_review)
    )


async def _render_page(
    request: Request,
    auth: User,
    session: SessionDep,
    filters: Filters,
    lines: list[PaymentLine],
    next_cursor: str | None,
    cursor: str,
    in_review: list[PaymentLine],
    *,
    review_errors: dict[str, FormErrors] | None = None,
    review_values: dict[str, dict[str, str]] | None = None,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    listing = PaymentListing(session, auth.company_id)
    active = filters.active
    return render(
        request,
        "payments/index.html",
        {
            "lines": lines,
            "in_review": in_review,
            "review_errors": review_errors or {},
            "review_values": review_values or {},
            "values": filters.values,
            "errors": filters.errors,
            "filtered": bool(active),
            "statuses": PAYMENT_LABELS,
            "gateways": await GatewayRepository(session, auth.company_id).listing(),
            "methods": await listing.methods(),
            "currencies": await listing.currencies(),
            "money": money,
            "export_url": f"/payments/export.csv?{urlencode(active)}",
            "next_url": f"/payments?{urlencode({**active, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "first_url": f"/payments?{urlencode(active)}" if cursor else None,
        },
        auth=auth,
        status_code=status_code,
        notice=notice,
    )


# --- the CSV export ------------------------------------------------------------------------

CSV_COLUMNS = (
    "payment_id",
    "created_at",
    "status",
    "amount",
    "currency",
    "amount_minor_units",
    "amount_refunded_minor_units",
    "payment_method_type",
    "gateway_id",
    "gateway_name",
    "invoice_id",
    "invoice_number",
    "customer_email",
    "failure_code",
)


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: a leading =, +, - or @ would run as a formula
    (names and emails are typed by people)."""
    text_value = "" if value is None else str(value)
    if text_value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + text_value
    return text_value


def csv_row(line: PaymentLine) -> list[str]:
    p = line.payment
    digits = exponent(p.currency) if is_currency(p.currency) else 2
    major = f"{Decimal(p.amount).scaleb(-digits):.{digits}f}"
    return [
        _cell(v)
        for v in (
            p.id,
            p.created_at.isoformat(),
            p.status,
            major,
            p.currency,
            p.amount,
            p.amount_refunded,
            p.payment_method_type,
            p.gateway_id,
            line.gateway_name,
            p.invoice_id,
            line.invoice_number,
            line.customer_email,
            p.failure_code,
        )
    ]


async def _csv_chunks(
    database: Database, company_id: str, query: PaymentQuery
) -> AsyncIterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    # Its own transaction: the response streams after the request's transaction has ended.
    async with database.transaction() as session:
        count = 0
        async for line in PaymentListing(session, company_id).stream(query):
            writer.writerow(csv_row(line))
            count += 1
            if count % 200 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
    yield buffer.getvalue()


@router.get("/payments/export.csv")
async def export_payments(
    request: Request,
    auth: User,
    database: DatabaseDep,
    params: FilterParams,
) -> Response:
    """Every payment the filters select (not only one page), streamed as CSV."""
    await need(request, auth, Permission.PAYMENTS_READ)
    filters = read_filters(params)
    if filters.errors:
        # The page shows the same filters with their errors; nothing is exported half-filtered.
        return redirect(f"/payments?{urlencode(filters.active)}", request)
    name = f"payments-{utcnow():%Y%m%d-%H%M%S}.csv"
    return StreamingResponse(
        _csv_chunks(database, auth.company_id, filters.query),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


# --- the review queue -----------------------------------------------------------------------


@router.post("/payments/{payment_id}/review")
async def review_payment(
    request: Request,
    payment_id: ObjectId,
    auth: User,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> Response:
    """Approve (succeeded) or refuse (failed) a payment in review, with the reason why."""
    await need(request, auth, Permission.PAYMENTS_WRITE)
    form = await request.form()
    values = {"outcome": text(form, "outcome"), "note": text(form, "note")}
    try:
        decision = parse(ReviewDecision, values)
        await PaymentService(database, keyring, settings, caller_of(auth)).review(
            payment_id, PaymentStatus(decision.outcome), decision.note
        )
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        # 422: the form again, with its errors; 409: someone decided it meanwhile.
        errors = FormErrors.from_problem(
            problem, ["outcome", "note"], labels={"outcome": "Decision", "note": "Reason"}
        )
        notice = Notice("error", problem.detail or problem.title) if problem.status == 409 else None
        async with database.transaction() as session:
            filters = read_filters({})
            listing = PaymentListing(session, auth.company_id)
            lines, next_cursor = await listing.page(filters.query, PageParams(limit=PAGE_SIZE))
            in_review, _ = await listing.page(
                PaymentQuery(status=PaymentStatus.REQUIRES_REVIEW),
                PageParams(limit=REVIEW_QUEUE_SIZE),
            )
            return await _render_page(
                request,
                auth,
                session,
                filters,
                lines,
                next_cursor,
                "",
                list(in_review),
                review_errors={payment_id: errors},
                review_values={payment_id: values},
                status_code=problem.status,
                notice=notice,
            )
    flash(request, "payment_approved" if decision.outcome == "succeeded" else "payment_refused")
    return redirect("/payments", request)
