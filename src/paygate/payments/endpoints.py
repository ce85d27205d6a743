"""The payments JSON API, and the return URL gateways send customers back to."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import JSONResponse, RedirectResponse
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.gateways.models import Gateway
from paygate.invoices.models import Invoice
from paygate.kit.deps import DatabaseDep, KeyringDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES, ProblemDetails, not_found
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.payments.idempotency import (
    MAX_KEY_LENGTH,
    Answer,
    Claim,
    Replay,
    answer_in,
    check_key,
    claim_in,
    request_fingerprint,
    run_once,
)
from paygate.payments.models import Payment, PaymentAttempt, PaymentEvent, Refund
from paygate.payments.repository import PaymentRepository
from paygate.payments.schemas import (
    AttemptOut,
    EventOut,
    Failure,
    GatewayCallOut,
    NextActionOut,
    PaymentCreate,
    PaymentOut,
    RefundCreate,
    RefundOut,
    ReviewDecision,
)
from paygate.payments.service import Caller, PaymentService, Settled
from paygate.payments.state import PaymentStatus, recorded_events
from paygate.security.audit import Actor

router = APIRouter(prefix="/api/v1", tags=["payments"], responses=PROBLEM_RESPONSES)
return_router = APIRouter(include_in_schema=False)

Reader = Annotated[AuthContext, Depends(require(Permission.PAYMENTS_READ))]
Writer = Annotated[AuthContext, Depends(require(Permission.PAYMENTS_WRITE))]
# The bound is declared here and enforced by check_key (a 400 bad-idempotency-key, as
# documented), so an over-long key gets the specific answer rather than a generic 422.
IdempotencyHeader = Annotated[
    str | None,
    Header(alias="Idempotency-Key", json_schema_extra={"maxLength": MAX_KEY_LENGTH}),
]


def payment_service(
    database: DatabaseDep, keyring: KeyringDep, settings: SettingsDep, caller: Caller
) -> PaymentService:
    return PaymentService(database, keyring, settings, caller)


def caller_of(auth: AuthContext) -> Caller:
    return Caller(auth.company_id, auth.actor, auth.origin)


async def payment_views(
    session: AsyncSession, company_id: str, payments: Sequence[Payment]
) -> list[PaymentOut]:
    """Payments with their attempts, history and refunds, as the API shows them."""
    repository = PaymentRepository(session, company_id)
    ids = [p.id for p in payments]
    attempts = await repository.attempts(ids)
    events = await repository.events(ids)
    refunds = await repository.refunds(ids)
    gateway_ids = {p.gateway_id for p in payments}
    keys = {
        g.id: g.public_config.get("publishable_key")
        for g in (
            await session.execute(select(Gateway).where(Gateway.id.in_(gateway_ids)))
        ).scalars()
    }
    return [
        _view(
            payment,
            [a for a in attempts if a.payment_id == payment.id],
            [e for e in events if e.payment_id == payment.id],
            [r for r in refunds if r.payment_id == payment.id],
            keys.get(payment.gateway_id),
        )
        for payment in payments
    ]


async def settled_view(settled: Settled) -> PaymentOut:
    """The view of a payment `pay` just settled, from the rows its transaction holds.

    Reserved and settled by this request, the payment has no refund (a refund needs the
    succeeded payment's row lock, which this transaction holds); its attempts are those its
    failovers closed and the one settled, its history the event that opened it, the
    failovers' and settle's: all known, none read. Settled meanwhile by sync or the
    sweeper: read like any payment.
    """
    payment = settled.payment
    if not settled.first:
        return (await payment_views(settled.session, payment.company_id, [payment]))[0]
    repository = PaymentRepository(settled.session, payment.company_id)
    if settled.opening_event is None:  # reserved earlier (a queued retry's payment)
        attempts = await repository.attempts([payment.id])
        events = await repository.events([payment.id])
    else:
        attempts = [*settled.closed_attempts, settled.attempt]
        events = [
            settled.opening_event,
            *settled.failover_events,
            *recorded_events(settled.session, payment.id),
        ]
    key = settled.public_config.get("publishable_key")
    return _view(payment, attempts, events, [], key if isinstance(key, str) else None)


def _view(
    payment: Payment,
    attempts: Sequence[PaymentAttempt],
    events: Sequence[PaymentEvent],
    refunds: Sequence[Refund],
    publishable_key: str | None,
) -> PaymentOut:
    action = payment.next_action
    return PaymentOut(
        id=payment.id,
        invoice_id=payment.invoice_id,
        gateway_id=payment.gateway_id,
        status=PaymentStatus(payment.status),
        amount=payment.amount,
        currency=payment.currency,
        amount_refunded=payment.amount_refunded,
        payment_method_type=payment.payment_method_type,
        next_action=NextActionOut(
            type=action["type"],
            redirect_url=action.get("redirect_url"),
            client_secret=action.get("client_secret"),
            # Stripe.js needs the publishable key (public by design) beside the secret.
            publishable_key=publishable_key if action["type"] == "stripe_sdk" else None,
        )
        if action and payment.status == PaymentStatus.REQUIRES_ACTION
        else None,
        failure=Failure(
            code=payment.failure_code,
            message=payment.failure_message or "",
            gateway_code=payment.gateway_code,
        )
        if payment.failure_code
        else None,
        review_reason=payment.review_reason,
        attempts=[AttemptOut.model_validate(a, from_attributes=True) for a in attempts],
        events=[EventOut.model_validate(e, from_attributes=True) for e in events],
        refunds=[RefundOut.model_validate(r, from_attributes=True) for r in refunds],
        created_at=payment.created_at,
        updated_at=payment.updated_at,
    )


async def payment_view(session: AsyncSession, company_id: str, payment_id: str) -> PaymentOut:
    payment = await PaymentRepository(session, company_id).get(payment_id)
    return (await payment_views(session, company_id, [payment]))[0]


def answer_response(answer: Answer) -> JSONResponse:
    headers = {"Idempotent-Replayed": "true"} if answer.replayed else {}
    return JSONResponse(answer.body, status_code=answer.status, headers=headers)


@router.post(
    "/invoices/{invoice_id}/payments",
    status_code=status.HTTP_201_CREATED,
    response_model=PaymentOut,
    responses={
        409: {
            "model": ProblemDetails,
            "description": "A request with this Idempotency-Key is still running, or the "
            "invoice is not payable",
        }
    },
)
async def create_payment(
    invoice_id: ObjectId,
    body: PaymentCreate,
    request: Request,
    auth: Writer,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    key = check_key(idempotency_key)
    service = payment_service(database, keyring, settings, caller_of(auth))
    fingerprint = request_fingerprint(request.url.path, body.model_dump(mode="json"))
    claim = Claim(auth.company_id, key, fingerprint)
    answers: list[Answer] = []
    claimed: list[int | None] = []

    async def claim_key(session: AsyncSession) -> None:
        # In the reserve transaction: a refused request rolls the claim back with it.
        claimed.append(await claim_in(session, claim, invoice_id))

    async def answer(settled: Settled) -> None:
        # In the settle transaction: the payment's outcome and its replayable answer commit
        # together.
        view = await settled_view(settled)
        answers.append(Answer(201, view.model_dump(mode="json")))
        answer_in(settled.session, claim, claimed[-1], answers[-1])

    try:
        await service.pay(invoice_id, body, before=claim_key, after=answer)
    except Replay as replay:
        return answer_response(replay.answer)
    return answer_response(answers[-1])


@router.get("/payments/{payment_id}", response_model=PaymentOut)
async def get_payment(payment_id: ObjectId, auth: Reader, session: SessionDep) -> PaymentOut:
    return await payment_view(session, auth.company_id, payment_id)


@router.post("/payments/{payment_id}/sync", response_model=PaymentOut)
async def sync_payment(
    payment_id: ObjectId,
    auth: Writer,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> PaymentOut:
    """Ask the gateway what became of an open payment (after a timeout, say)."""
    await payment_service(database, keyring, settings, caller_of(auth)).sync(payment_id)
    async with database.transaction() as session:
        return await payment_view(session, auth.company_id, payment_id)


@router.post("/payments/{payment_id}/review", response_model=PaymentOut)
async def review_payment(
    payment_id: ObjectId,
    body: ReviewDecision,
    auth: Writer,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> PaymentOut:
    """Decide a payment in requires_review, after checking it in the gateway's dashboard."""
    service = payment_service(database, keyring, settings, caller_of(auth))
    await service.review(payment_id, PaymentStatus(body.outcome), body.note)
    async with database.transaction() as session:
        return await payment_view(session, auth.company_id, payment_id)


@router.post(
    "/payments/{payment_id}/refunds", status_code=status.HTTP_201_CREATED, response_model=RefundOut
)
async def create_refund(
    payment_id: ObjectId,
    body: RefundCreate,
    request: Request,
    auth: Writer,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyHeader = None,
) -> JSONResponse:
    key = check_key(idempotency_key)
    service = payment_service(database, keyring, settings, caller_of(auth))

    async def operation() -> Answer:
        refund = await service.refund(payment_id, body)
        return Answer(
            201, RefundOut.model_validate(refund, from_attributes=True).model_dump(mode="json")
        )

    fingerprint = request_fingerprint(request.url.path, body.model_dump(mode="json"))
    return answer_response(await run_once(database, auth.company_id, key, fingerprint, operation))


@router.post("/refunds/{refund_id}/sync", response_model=RefundOut)
async def sync_refund(
    refund_id: ObjectId,
    auth: Writer,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> RefundOut:
    """Ask the gateway what became of a pending refund (answered pending, or timed out)."""
    service = payment_service(database, keyring, settings, caller_of(auth))
    refund = await service.sync_refund(refund_id)
    return RefundOut.model_validate(refund, from_attributes=True)


@router.get("/gateway-calls", response_model=list[GatewayCallOut])
async def list_gateway_calls(
    auth: Reader,
    session: SessionDep,
    paging: Annotated[PageParams, Depends(page_params)],
    payment_id: Annotated[str | None, Query(max_length=40)] = None,
) -> list[GatewayCallOut]:
    """Every call paygate made to a gateway (redacted), newest first."""
    rows, _ = await PaymentRepository(session, auth.company_id).calls(payment_id, paging)
    return [GatewayCallOut.model_validate(row, from_attributes=True) for row in rows]


@return_router.get("/payments/{payment_id}/return")
async def payment_return(
    payment_id: ObjectId,
    request: Request,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> RedirectResponse:
    """Gateways send the customer back here; paygate asks the gateway, never the browser."""
    async with database.transaction() as session:
        payment = await session.get(Payment, payment_id)
        invoice = await session.get(Invoice, payment.invoice_id) if payment else None
    if payment is None or invoice is None:
        raise not_found("payment")
    caller = Caller(payment.company_id, Actor("customer", None, invoice.customer_email), origin)
    service = PaymentService(database, keyring, settings, caller)
    payment = await service.complete(payment_id, dict(request.query_params))
    if payment.return_url:
        query = urlencode({"payment_id": payment.id, "status": payment.status})
        separator = "&" if "?" in payment.return_url else "?"
        return RedirectResponse(f"{payment.return_url}{separator}{query}", status_code=303)
    return RedirectResponse(f"/pay/{invoice.pay_token}?payment={payment.id}", status_code=303)
