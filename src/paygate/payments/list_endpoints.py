"""GET /api/v1/payments: every payment of the company, with the payments page's filters."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.pagination import PageParams, page_params
from paygate.payments.endpoints import payment_views
from paygate.payments.listing import PaymentListing, PaymentQuery
from paygate.payments.schemas import PaymentPage
from paygate.payments.state import PaymentStatus

router = APIRouter(prefix="/api/v1", tags=["payments"], responses=PROBLEM_RESPONSES)

Reader = Annotated[AuthContext, Depends(require(Permission.PAYMENTS_READ))]
MinorUnits = Annotated[int | None, Query(ge=0, le=10**15, description="In minor units")]


def payment_query(
    invoice_id: Annotated[str | None, Query(max_length=40)] = None,
    gateway_id: Annotated[str | None, Query(max_length=40)] = None,
    status: Annotated[PaymentStatus | None, Query()] = None,
    method: Annotated[
        str | None, Query(max_length=30, description="Payment method type, e.g. card")
    ] = None,
    currency: Annotated[str | None, Query(min_length=3, max_length=3, pattern="^[A-Z]{3}$")] = None,
    since: Annotated[datetime | None, Query(description="Created at or after")] = None,
    until: Annotated[datetime | None, Query(description="Created before")] = None,
    amount_min: MinorUnits = None,
    amount_max: MinorUnits = None,
    q: Annotated[
        str | None,
        Query(
            max_length=320,
            description="A payment id, an invoice number, or part of the customer's email",
        ),
    ] = None,
) -> PaymentQuery:
    return PaymentQuery(
        invoice_id=invoice_id,
        gateway_id=gateway_id,
        status=status,
        method=method,
        currency=currency,
        since=since,
        until=until,
        amount_min=amount_min,
        amount_max=amount_max,
        search=q.strip() or None if q else None,
    )


@router.get("/payments", response_model=PaymentPage)
async def list_payments(
    auth: Reader,
    session: SessionDep,
    query: Annotated[PaymentQuery, Depends(payment_query)],
    paging: Annotated[PageParams, Depends(page_params)],
) -> PaymentPage:
    """The company's payments, newest first, with every filter the payments page has."""
    lines, cursor = await PaymentListing(session, auth.company_id).page(query, paging)
    return PaymentPage(
        data=await payment_views(session, auth.company_id, [line.payment for line in lines]),
        has_more=cursor is not None,
        next_cursor=cursor,
    )
