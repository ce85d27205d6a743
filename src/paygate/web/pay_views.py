"""What the payment page shows: the ways to pay (methods, then the gateways that may take
the invoice now, in routing order), the customer's payments, the next way after a
gateway's own failure, and the page's Content Security Policy (Stripe.js only from the
bases of the Stripe gateways offered)."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import Request, Response
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.models import Company, Membership, User
from paygate.accounts.permissions import Role
from paygate.gateways.adapters.base import GatewayType
from paygate.gateways.adapters.registry import all_specs, spec_for
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.models import Invoice
from paygate.invoices.schemas import InvoiceStatus
from paygate.kit.middleware import ContentSecurityPolicy, set_content_security_policy
from paygate.kit.money import Money, exponent
from paygate.payments.models import Payment, PaymentAttempt
from paygate.payments.state import FailureKind, PaymentStatus
from paygate.routing.decision import routed_gateways
from paygate.routing.engine import RoutingInput
from paygate.web.forms import FormErrors
from paygate.web.pay_words import customer_failure, method_label, public_label
from paygate.web.render import render

STRIPE_JS_URL = "https://js.stripe.com/v3/"
# What Stripe.js itself needs besides its script (https://docs.stripe.com/security/guide#content-security-policy).
STRIPE_CONNECT = ("https://api.stripe.com",)
STRIPE_FRAMES = ("https://js.stripe.com", "https://hooks.stripe.com")

PAYABLE = (InvoiceStatus.OPEN.value, InvoiceStatus.PARTIALLY_PAID.value)


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
