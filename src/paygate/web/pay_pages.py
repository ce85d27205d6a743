"""The public invoice payment page (`/pay/{token}`) and the sandbox's hosted 3-D Secure page.

No account: the unguessable token in the link is the customer's only credential. The page
shows the invoice, offers only the gateways that may take it (grouped by payment method,
then a gateway choice), and pays through the same `PaymentService` as the JSON API, with
a one-time nonce from the form as the idempotency key so a double submit charges once.

Card numbers typed into the sandbox form go to the service for this one call: they are
never logged, stored in clear or rendered back into the page.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any
from urllib.parse import urlencode, urlsplit

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from starlette.datastructures import FormData

from paygate.accounts.models import Company, Membership, User
from paygate.accounts.permissions import Role
from paygate.db import Database
from paygate.gateways.adapters.base import GatewayType
from paygate.gateways.adapters.registry import all_specs, spec_for
from paygate.gateways.connection import CREDENTIALS_UNREADABLE
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.models import Invoice
from paygate.invoices.repository import invoice_by_pay_token
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, KeyringDep, Origin, OriginDep, SettingsDep
from paygate.kit.errors import FieldError, Problem, not_found, validation_failed
from paygate.kit.ids import ObjectId
from paygate.kit.middleware import ContentSecurityPolicy, set_content_security_policy
from paygate.kit.money import Money, exponent
from paygate.payments.idempotency import Answer, request_fingerprint, run_once
from paygate.payments.models import Payment, PaymentAttempt
from paygate.payments.schemas import PaymentCreate
from paygate.payments.service import Caller, PaymentService
from paygate.payments.state import FailureKind, PaymentStatus
from paygate.routing.decision import routed_gateways
from paygate.routing.engine import RoutingInput
from paygate.security.audit import Actor
from paygate.security.crypto import Keyring
from paygate.security.rate_limits import rate_limit
from paygate.settings import Settings
from paygate.web.forms import FormErrors, text
from paygate.web.pay_words import customer_failure, method_label, public_label
from paygate.web.render import PageRoute, render
from paygate.web.session import CSRF_FIELD

logger = structlog.get_logger(__name__)

router = APIRouter(route_class=PageRoute)

# The payment link's token (String(64) in the database).
PayToken = Annotated[str, Path(min_length=1, max_length=64)]

# A processing payment the customer reloads after this long is re-checked with the gateway.
SYNC_AFTER = timedelta(seconds=10)
# How long a double submit waits for the first request with its nonce to finish.
IN_PROGRESS_WAIT_SECONDS = 15.0
STRIPE_JS_URL = "https://js.stripe.com/v3/"
# What Stripe.js itself needs besides its script (https://docs.stripe.com/security/guide#content-security-policy).
STRIPE_CONNECT = ("https://api.stripe.com",)
STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")

PAYABLE = (InvoiceStatus.OPEN.value, InvoiceStatus.PARTIALLY_PAID.value)
CARD_FIELDS = ("card_number", "card_expiry", "card_cvc", "card_name", "amount")
CARD_LABELS = {
    "card_number": "Card number",
    "card_expiry": "Expiry date",
    "card_cvc": "Security code",
    "card_name": "Name on card",
    "amount": "Amount",
}


# --- view models --------------------------------------------------------------------------


@dataclass(frozen=True)
class GatewayOption:
    """One gateway the customer may pay with, and how its form works on this page."""

    id: str
    label: str  # what customers see: never the gateway's internal name
    type: str
    type_name: str
    # card_form (the sandbox), stripe_elements (Stripe.js fields) or hosted (a redirect).
    ui: str
    publishable_key: str = ""
    stripe_js_url: str = ""


@dataclass(frozen=True)
class MethodGroup:
    type: str
    label: str
    gateways: list[GatewayOption]


@dataclass(frozen=True)
class PaymentView:
    id: str
    status: str
    amount: str
    gateway_id: str
    gateway_label: str
    method_label: str
    last4: str | None
    when: datetime
    failure_message: str | None
    redirect_url: str | None


@dataclass
class PageState:
    """What the page needs besides the invoice: filled by `page_context`."""

    errors: FormErrors = field(default_factory=FormErrors)
    amount: str = ""
    card_name: str = ""
    selected_gateway: str | None = None
    status_code: int = 200


def money(amount: int, currency: str) -> str:
    return Money(amount, currency).format()


def stripe_js_url(gateway: Gateway) -> str:
    """Stripe.js from the gateway's configured base: localstripe serves a fake one."""
    base = (gateway.public_config.get("api_base_url") or "").rstrip("/")
    return f"{base}/js.stripe.com/v3/" if base else STRIPE_JS_URL


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def pay_page_policy(
    groups: Sequence[MethodGroup], embed_origins: Sequence[str] | None = None
) -> ContentSecurityPolicy:
    """The page's CSP: Stripe.js from each offered Stripe gateway's own base and nothing more.

    Real Stripe.js talks to api.stripe.com and frames js/hooks.stripe.com; localstripe's fake
    (a gateway whose `api_base_url` is set) talks only to its own origin. Hosted gateways
    redirect a submitted form off the site, so `form-action` cannot stay 'self' with them.
    """
    scripts: list[str] = []
    connect: list[str] = []
    frames: list[str] = []
    hosted = False
    for option in (g for group in groups for g in group.gateways):
        if option.ui == "hosted":
            hosted = True
        if option.ui != "stripe_elements":
            continue
        origin = _origin(option.stripe_js_url)
        scripts.append(origin)
        if option.stripe_js_url == STRIPE_JS_URL:
            connect.extend(STRIPE_CONNECT)
            frames.extend(STRIPE_FRAMES)
        else:
            connect.append(origin)
    extra: dict[str, tuple[str, ...]] = {}
    for name, sources in (("script-src", scripts), ("connect-src", connect), ("frame-src", frames)):
        if sources:
            extra[name] = tuple(dict.fromkeys(sources))
    replace: dict[str, tuple[str, ...]] = {}
    if hosted:
        replace["form-action"] = ()
    if embed_origins:
        replace["frame-ancestors"] = ("'self'", *embed_origins)
    return ContentSecurityPolicy(extra, replace=replace)


# A custom gateway takes a token its own browser code makes; its contract gives the page no
# way to make one (nor a hosted page without one), so it serves API payments only.
PAGE_TYPES = frozenset(GatewayType) - {GatewayType.CUSTOM}


def gateway_option(gateway: Gateway, method_type: str) -> GatewayOption:
    kind = GatewayType(gateway.gateway_type)
    spec = spec_for(kind)
    label = public_label(gateway, method_type)
    if kind is GatewayType.SANDBOX:
        return GatewayOption(gateway.id, label, kind.value, spec.display_name, "card_form")
    if kind is GatewayType.STRIPE and gateway.public_config.get("payment_page_flow") != "checkout":
        return GatewayOption(
            gateway.id,
            label,
            kind.value,
            spec.display_name,
            "stripe_elements",
            # Public by design: Stripe.js needs it. The secret key never leaves the server.
            publishable_key=gateway.public_config.get("publishable_key", ""),
            stripe_js_url=stripe_js_url(gateway),
        )
    return GatewayOption(gateway.id, label, kind.value, spec.display_name, "hosted")


def _method_order() -> list[str]:
    seen: list[str] = ["card", "paypal"]
    for spec in all_specs():
        for method in spec.payment_method_types:
            if method not in seen:
                seen.append(method)
    return seen


async def ways_to_pay(session: AsyncSession, invoice: Invoice) -> list[MethodGroup]:
    """Payment methods first, each with the gateways that may take this invoice now, in the
    company's routing order (routing's first choice first; gateways down are left out)."""
    gateways = GatewayRepository(session, invoice.company_id)
    offered = {m for g in await gateways.listing() if g.enabled for m in g.payment_method_types}
    order = _method_order()
    groups = []
    for method in sorted(offered, key=lambda m: (order.index(m) if m in order else len(order), m)):
        payment = RoutingInput(
            amount=invoice.amount_due,
            currency=invoice.currency,
            payment_method_type=method,
            customer_country=invoice.customer_country,
            metadata=invoice.meta or {},
            payment_id=invoice.id,
        )
        eligible = [
            g
            for g in await routed_gateways(session, invoice.company_id, payment)
            if g.gateway_type in PAGE_TYPES
        ]
        if eligible:
            groups.append(
                MethodGroup(
                    method, method_label(method), [gateway_option(g, method) for g in eligible]
                )
            )
    return groups


async def contact_email(session: AsyncSession, company_id: str) -> str | None:
    """The company's first owner: who the customer can write to when nothing can take it."""
    statement = (
        select(User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.company_id == company_id, Membership.role == Role.OWNER.value)
        .order_by(Membership.created_at)
        .limit(1)
    )
    return (await session.execute(statement)).scalar_one_or_none()


def _last4(payment: Payment) -> str | None:
    # Only the sandbox's public test card numbers are stored as digits; tokens say nothing.
    method = payment.payment_method or ""
    return method[-4:] if method.isdigit() and len(method) >= 12 else None


async def payment_views(session: AsyncSession, payments: Sequence[Payment]) -> list[PaymentView]:
    ids = {p.gateway_id for p in payments}
    gateways = {
        g.id: g
        for g in (await session.execute(select(Gateway).where(Gateway.id.in_(ids)))).scalars()
    }
    views = []
    for payment in payments:
        action = payment.next_action or {}
        views.append(
            PaymentView(
                id=payment.id,
                status=payment.status,
                amount=money(payment.amount, payment.currency),
                gateway_id=payment.gateway_id,
                gateway_label=public_label(
                    gateways[payment.gateway_id], payment.payment_method_type
                )
                if payment.gateway_id in gateways
                else "",
                method_label=method_label(payment.payment_method_type),
                last4=_last4(payment),
                when=payment.updated_at,
                # Plain words for the customer, never the provider's own message.
                failure_message=customer_failure(payment.failure_code),
                redirect_url=action.get("redirect_url")
                if payment.status == PaymentStatus.REQUIRES_ACTION
                and action.get("type") == "redirect"
                else None,
            )
        )
    return views


async def invoice_payments(session: AsyncSession, invoice: Invoice) -> Sequence[Payment]:
    statement = (
        select(Payment)
        .where(Payment.company_id == invoice.company_id, Payment.invoice_id == invoice.id)
        .order_by(Payment.created_at)
    )
    return (await session.execute(statement)).scalars().all()


async def next_way(
    session: AsyncSession, payment: Payment, options: Sequence[GatewayOption]
) -> GatewayOption | None:
    """After a failure of the gateway's own (not a decline), the next way to pay in routing
    order: what the page offers first, so the customer moves on with one click."""
    statement = (
        select(PaymentAttempt.failure_kind)
        .where(PaymentAttempt.payment_id == payment.id)
        .order_by(PaymentAttempt.id.desc())
        .limit(1)
    )
    kind = (await session.execute(statement)).scalar_one_or_none()
    if kind != FailureKind.TECHNICAL:
        return None
    return next((o for o in options if o.id != payment.gateway_id), None)


async def page_context(
    session: AsyncSession, invoice: Invoice, result: Payment | None, state: PageState
) -> dict[str, Any]:
    company = await session.get(Company, invoice.company_id)
    payments = await invoice_payments(session, invoice)
    succeeded = [p for p in payments if p.status == PaymentStatus.SUCCEEDED]
    payable = invoice.status in PAYABLE
    groups = await ways_to_pay(session, invoice) if payable else []
    result_view = (await payment_views(session, [result]))[0] if result is not None else None
    # While a payment is still being decided, offering another would only be refused.
    show_ways = payable and (
        result_view is None or result_view.status in ("failed", "canceled", "succeeded")
    )
    all_options = [g for group in groups for g in group.gateways]
    next_option = (
        await next_way(session, result, all_options)
        if result is not None and result.status == PaymentStatus.FAILED
        else None
    )
    selected = next_option.id if next_option else state.selected_gateway
    if selected not in {g.id for g in all_options}:
        selected = all_options[0].id if all_options else None
    selected_method = next(
        (group.type for group in groups if any(g.id == selected for g in group.gateways)), None
    )
    decimals = exponent(invoice.currency)
    return {
        "invoice": invoice,
        "company_name": company.name if company else "",
        "embed_origins": (company.embed_origins if company else None) or [],
        "money": money,
        "lines": invoice.lines,
        "receipts": await payment_views(session, succeeded),
        "result": result_view,
        "payable": payable,
        "show_ways": show_ways,
        "groups": groups,
        "selected_gateway": selected,
        "next_option": next_option,
        "selected_method": selected_method,
        "contact_email": await contact_email(session, invoice.company_id) if not groups else None,
        "nonce": secrets.token_urlsafe(18),
        "errors": state.errors,
        "amount_value": state.amount
        or (str(Money(invoice.amount_due, invoice.currency).decimal()) if decimals else ""),
        "amount_due_plain": str(Money(invoice.amount_due, invoice.currency).decimal()),
        "amount_step": "1" if decimals == 0 else "0." + "0" * (decimals - 1) + "1",
        "card_name": state.card_name,
        "today": date.today(),
    }


async def render_page(
    request: Request,
    session: AsyncSession,
    invoice: Invoice,
    result: Payment | None = None,
    state: PageState | None = None,
) -> Response:
    state = state or PageState()
    context = await page_context(session, invoice, result, state)
    set_content_security_policy(
        request.state, pay_page_policy(context["groups"], context["embed_origins"])
    )
    return render(request, "pay/page.html", context, status_code=state.status_code)


# --- parsing what the customer typed ---------------------------------------------------


def parse_amount(raw: str, currency: str) -> int | None:
    """ "12.50" in the invoice's currency -> 1250 minor units. Empty means the amount due."""
    raw = raw.strip().replace(",", "").replace(" ", "")
    if not raw:
        return None
    digits = exponent(currency)
    try:
        value = Decimal(raw)
    except InvalidOperation:
        value = Decimal("NaN")
    if not value.is_finite() or value <= 0:
        raise validation_failed([FieldError("amount", "Enter an amount more than zero.")])
    minor = value.scaleb(digits)
    if minor != minor.to_integral_value():
        unit = "whole units" if digits == 0 else f"at most {digits} decimals"
        raise validation_failed([FieldError("amount", f"Enter the amount in {unit}.")])
    return int(minor)


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char) * (2 if position % 2 else 1)
        total += value - 9 if value > 9 else value
    return total % 10 == 0


MAX_CARD_NAME = 200


def parse_card(form: Mapping[str, str]) -> str:
    """The card number when the form is complete and plausible; field errors otherwise."""
    errors = []
    number = re.sub(r"[\s-]", "", form.get("card_number", ""))
    if not number:
        errors.append(FieldError("card_number", "Enter the card number."))
    elif not number.isdigit() or not 12 <= len(number) <= 19 or not _luhn(number):
        errors.append(FieldError("card_number", "This card number is not valid."))
    expiry = re.fullmatch(r"\s*(\d{1,2})\s*/?\s*(\d{2}|\d{4})\s*", form.get("card_expiry", ""))
    if not expiry:
        errors.append(FieldError("card_expiry", "Enter the expiry date as MM/YY."))
    else:
        month, year = int(expiry.group(1)), int(expiry.group(2))
        year = year + 2000 if year < 100 else year
        today = utcnow().date()
        if not 1 <= month <= 12:
            errors.append(FieldError("card_expiry", "The month must be 01 to 12."))
        elif (year, month) < (today.year, today.month):
            errors.append(FieldError("card_expiry", "This card has expired."))
    if not re.fullmatch(r"\d{3,4}", form.get("card_cvc", "").strip()):
        errors.append(FieldError("card_cvc", "Enter the 3 or 4 digits on the back of the card."))
    card_name = form.get("card_name", "").strip()
    if not card_name:
        errors.append(FieldError("card_name", "Enter the name on the card."))
    elif len(card_name) > MAX_CARD_NAME:
        errors.append(FieldError("card_name", f"Use at most {MAX_CARD_NAME} characters."))
    if errors:
        raise validation_failed(errors)
    return number


# --- the page -----------------------------------------------------------------------------


async def _invoice_or_404(session: AsyncSession, token: str) -> Invoice:
    invoice = await invoice_by_pay_token(session, token) if len(token) <= 64 else None
    if invoice is None:
        raise not_found("invoice")
    return invoice


async def _payment_of(session: AsyncSession, invoice: Invoice, payment_id: str) -> Payment | None:
    payment = await session.get(Payment, payment_id[:40])
    if payment is None or payment.invoice_id != invoice.id:
        return None
    return payment


def _service(
    database: Database, keyring: Keyring, settings: Settings, invoice: Invoice, origin: Origin
) -> PaymentService:
    actor = Actor("customer", None, invoice.customer_email)
    return PaymentService(database, keyring, settings, Caller(invoice.company_id, actor, origin))


@router.get("/pay/{token}")
async def pay_page(
    token: PayToken,
    request: Request,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await rate_limit(request, "pay_page", account=token)
    payment_id = request.query_params.get("payment")
    async with database.transaction() as session:
        invoice = await _invoice_or_404(session, token)
        result = await _payment_of(session, invoice, payment_id) if payment_id else None
        stale = (
            result is not None
            and result.status == PaymentStatus.PROCESSING
            and utcnow() - result.updated_at > SYNC_AFTER
        )
    if stale and result is not None:
        # The customer reloaded a payment still undecided: ask the gateway now.
        try:
            await _service(database, keyring, settings, invoice, origin).sync(result.id)
        except Problem:
            logger.warning("pay_page_sync_failed", payment_id=result.id)
    async with database.transaction() as session:
        invoice = await _invoice_or_404(session, token)
        result = await _payment_of(session, invoice, payment_id) if payment_id else None
        state = PageState(selected_gateway=request.query_params.get("gateway"))
        return await render_page(request, session, invoice, result, state)


async def _read_body(request: Request) -> tuple[dict[str, str], bool]:
    """The posted fields, from a form or from pay.js's JSON; and whether JSON was sent."""
    if request.headers.get("content-type", "").startswith("application/json"):
        try:
            raw = await request.json()
        except ValueError:
            raw = None
        if not isinstance(raw, dict):
            raise Problem(400, "bad-request", "Bad request", "The request was not understood.")
        return {k: str(v) for k, v in raw.items() if isinstance(v, str | int)}, True
    form: FormData = await request.form()
    names = (
        "nonce",
        "gateway_id",
        "method_type",
        "payment_method",
        *CARD_FIELDS,
    )
    return {name: text(form, name) for name in names}, False


# The service speaks to API clients (minor units, field names): say it to the customer.
_CUSTOMER_WORDS = {
    "too_large": "That is more than what is due now.",
    "partial_not_allowed": "Please pay the full amount due.",
    "ineligible": "This way to pay is not available for this invoice. Please choose another.",
    CREDENTIALS_UNREADABLE: (
        "This way to pay is not available right now. Please choose another, or try again later."
    ),
}


def customer_words(problem: Problem) -> Problem:
    if problem.status == 404 and problem.detail == "No such gateway.":
        return Problem(422, "ineligible", "Not available", _CUSTOMER_WORDS["ineligible"])
    if problem.slug == CREDENTIALS_UNREADABLE:
        # The merchant's key trouble is theirs to fix: the customer only learns to pay otherwise.
        return Problem(problem.status, problem.slug, "Not available", _CUSTOMER_WORDS[problem.slug])
    if problem.slug == "no-eligible-gateway":
        return Problem(422, problem.slug, problem.title, _CUSTOMER_WORDS["ineligible"])
    if not problem.errors:
        return problem
    errors = [
        FieldError(e.field, _CUSTOMER_WORDS.get(e.code, e.message), e.code) for e in problem.errors
    ]
    return Problem(problem.status, problem.slug, problem.title, problem.detail, errors=errors)


def _result_url(token: str, payment_id: str) -> str:
    return f"/pay/{token}?{urlencode({'payment': payment_id})}"


def _json_problem(problem: Problem) -> JSONResponse:
    messages = [e.message for e in problem.errors] or [problem.detail or problem.title]
    return JSONResponse(
        {"error": " ".join(messages), "fields": {e.field: e.message for e in problem.errors}},
        status_code=problem.status,
    )


async def _pay_once(
    database: Database,
    invoice: Invoice,
    key: str,
    fingerprint: str,
    service: PaymentService,
    body: PaymentCreate,
) -> str:
    """Pay under the nonce's idempotency key; a double submit gets the first payment's id."""

    async def operation() -> Answer:
        payment_id = await service.pay(invoice.id, body, cause="paid on the payment page")
        return Answer(201, {"payment_id": payment_id})

    waited = 0.0
    while True:
        try:
            answer = await run_once(database, invoice.company_id, key, fingerprint, operation)
            return str(answer.body["payment_id"])
        except Problem as problem:
            # The first submit is still running: wait for its answer instead of paying again.
            if problem.slug != "idempotency-in-progress" or waited >= IN_PROGRESS_WAIT_SECONDS:
                raise
        await asyncio.sleep(0.25)
        waited += 0.25


@router.post("/pay/{token}/payments")
async def pay_submit(
    token: PayToken,
    request: Request,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await rate_limit(request, "pay_submit", account=token)
    async with database.transaction() as session:
        invoice = await _invoice_or_404(session, token)
        # Only how each gateway's form works (its ui) is read here, not its label.
        options = {
            g.id: gateway_option(g, "card")
            for g in await GatewayRepository(session, invoice.company_id).listing()
            if g.gateway_type in PAGE_TYPES
        }
    fields, wants_json = await _read_body(request)
    fields.pop(CSRF_FIELD, None)
    state = PageState(
        amount=fields.get("amount", ""),
        card_name=fields.get("card_name", ""),
        selected_gateway=fields.get("gateway_id") or None,
    )
    try:
        nonce = fields.get("nonce", "")
        if not 16 <= len(nonce) <= 64:
            raise Problem(400, "bad-request", "Bad request", "Reload the page and try again.")
        gateway_id = fields.get("gateway_id", "")
        option = options.get(gateway_id)
        if gateway_id and option is None:
            # Only what the page offers may be used from it.
            raise Problem(422, "ineligible", "Not available", _CUSTOMER_WORDS["ineligible"])
        amount = parse_amount(fields.get("amount", ""), invoice.currency)
        method: str | None = None
        if option is not None and option.ui == "card_form":
            method = parse_card(fields)
        elif option is not None and option.ui == "stripe_elements":
            method = fields.get("payment_method", "").strip() or None
            if method is None or not method.startswith(("tok_", "pm_")):
                raise validation_failed([FieldError("card", "Enter your card details.")])
        body = PaymentCreate(
            gateway_id=gateway_id[:40] or None,
            payment_method=method,
            payment_method_type=(fields.get("method_type") or "card")[:30],
            amount=amount,
        )
        # The fingerprint names what is paid, never the card number itself.
        fingerprint = request_fingerprint(
            request.url.path,
            {"gateway": body.gateway_id, "amount": amount, "type": body.payment_method_type},
        )
        service = _service(database, keyring, settings, invoice, origin)
        payment_id = await _pay_once(
            database, invoice, f"pay-page:{nonce}", fingerprint, service, body
        )
    except Problem as raised:
        problem = customer_words(raised)
        if wants_json:
            return _json_problem(problem)
        state.errors = FormErrors.from_problem(problem, CARD_FIELDS, labels=CARD_LABELS)
        state.status_code = problem.status if problem.status >= 400 else 422
        async with database.transaction() as session:
            invoice = await _invoice_or_404(session, token)
            return await render_page(request, session, invoice, None, state)
    async with database.transaction() as session:
        payment = await session.get(Payment, payment_id)
        assert payment is not None
        action = payment.next_action or {}
        waiting = payment.status == PaymentStatus.REQUIRES_ACTION
    result_url = _result_url(token, payment_id)
    redirect_to = (
        action.get("redirect_url") if waiting and action.get("type") == "redirect" else None
    )
    if wants_json:
        answer: dict[str, Any] = {
            "payment_id": payment_id,
            "status": payment.status,
            "redirect_url": redirect_to or result_url,
        }
        if waiting and action.get("type") == "stripe_sdk":
            answer["next_action"] = {
                "type": "stripe_sdk",
                "client_secret": action.get("client_secret"),
                "complete_url": f"/pay/{token}/payments/{payment_id}/complete",
            }
        return JSONResponse(answer)
    return RedirectResponse(redirect_to or result_url, status_code=303)


@router.post("/pay/{token}/payments/{payment_id}/complete")
async def pay_complete(
    token: PayToken,
    payment_id: ObjectId,
    request: Request,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    """After Stripe.js's 3-D Secure: paygate reads the outcome from the gateway, not the page."""
    await rate_limit(request, "pay_submit", account=token)
    async with database.transaction() as session:
        invoice = await _invoice_or_404(session, token)
        payment = await _payment_of(session, invoice, payment_id)
    if payment is None:
        raise not_found("payment")
    try:
        await _service(database, keyring, settings, invoice, origin).complete(payment.id, {})
    except Problem as problem:
        return _json_problem(problem)
    url = _result_url(token, payment.id)
    if request.headers.get("content-type", "").startswith("application/json"):
        return JSONResponse({"redirect_url": url})
    return RedirectResponse(url, status_code=303)


# --- the sandbox's hosted customer-action page -----------------------------------------


def same_origin_return(target: str, settings: Settings) -> str | None:
    """`target` when it stays on paygate (a path, or under the base URL); None otherwise."""
    if not target or any(c in target for c in "\r\n\t\\"):
        return None
    if target.startswith("/") and not target.startswith("//"):
        parts = urlsplit(target)
        return target if not parts.scheme and not parts.netloc else None
    base = settings.base_url.rstrip("/")
    if target == base or target.startswith(base + "/"):
        parts, own = urlsplit(target), urlsplit(base)
        if (parts.scheme, parts.netloc) == (own.scheme, own.netloc):
            return target
    return None


def _refused_return() -> Problem:
    return Problem(
        400,
        "bad-return-url",
        "This link is not valid",
        "The page asked to send you somewhere outside paygate, so it was stopped.",
    )


@router.get("/sandbox/authorize/{reference}")
async def sandbox_authorize_page(
    reference: str, request: Request, settings: SettingsDep
) -> Response:
    return_to = same_origin_return(request.query_params.get("return_to", ""), settings)
    if return_to is None:
        raise _refused_return()
    return render(
        request,
        "pay/sandbox_authorize.html",
        {"reference": reference[:64], "return_to": return_to, "company_name": "Sandbox test bank"},
    )


@router.post("/sandbox/authorize/{reference}")
async def sandbox_authorize(reference: str, request: Request, settings: SettingsDep) -> Response:
    form = await request.form()
    return_to = same_origin_return(text(form, "return_to"), settings)
    if return_to is None:
        raise _refused_return()
    outcome = "approved" if text(form, "outcome") == "approve" else "failed"
    separator = "&" if "?" in return_to else "?"
    return RedirectResponse(
        f"{return_to}{separator}{urlencode({'outcome': outcome})}", status_code=303
    )
