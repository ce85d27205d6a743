"""The public invoice payment page (`/pay/{token}`): show it, pay, finish after 3-D Secure.

No account: the unguessable token in the link is the customer's only credential. The page
shows the invoice, offers only the gateways that may take it (grouped by payment method,
then a gateway choice; gathered in pay_views.py), and pays through the same
`PaymentService` as the JSON API, with a one-time nonce from the form as the idempotency
key so a double submit charges once.

Card numbers typed into the sandbox form (read in pay_forms.py) go to the service for this
one call: they are never logged, stored in clear or rendered back into the page.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Annotated, Any
from urllib.parse import urlencode

import structlog
from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.models import Invoice
from paygate.invoices.repository import invoice_by_pay_token
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, KeyringDep, Origin, OriginDep, SettingsDep
from paygate.kit.errors import FieldError, Problem, not_found, validation_failed
from paygate.kit.ids import ObjectId
from paygate.payments.idempotency import Answer, request_fingerprint, run_once
from paygate.payments.models import Payment
from paygate.payments.schemas import PaymentCreate
from paygate.payments.service import Caller, PaymentService
from paygate.payments.state import PaymentStatus
from paygate.security.audit import Actor
from paygate.security.crypto import Keyring
from paygate.security.rate_limits import rate_limit
from paygate.settings import Settings
from paygate.web.forms import FormErrors
from paygate.web.pay_forms import CARD_FIELDS, CARD_LABELS, parse_amount, parse_card, read_body
from paygate.web.pay_views import PAGE_TYPES, PageState, gateway_option, render_page
from paygate.web.pay_words import CUSTOMER_WORDS, customer_words
from paygate.web.render import PageRoute
from paygate.web.session import CSRF_FIELD

logger = structlog.get_logger(__name__)

router = APIRouter(route_class=PageRoute)

# The payment link's token (String(64) in the database).
PayToken = Annotated[str, Path(min_length=1, max_length=64)]

# A processing payment the customer reloads after this long is re-checked with the gateway.
SYNC_AFTER = timedelta(seconds=10)
# How long a double submit waits for the first request with its nonce to finish.
IN_PROGRESS_WAIT_SECONDS = 15.0


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
    fields, wants_json = await read_body(request)
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
            raise Problem(422, "ineligible", "Not available", CUSTOMER_WORDS["ineligible"])
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
