"""The overview, the page after sign-in: a column of tiles, each from one function in TILES.

A tile function takes the request's session and the signed-in user and returns a `Tile`
(a template under templates/overview/ and its values), or None when the user may not see it
or it has nothing to say. Later pages add their tile with one function and one line here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.gateways.repository import GatewayRepository
from paygate.invoices.repository import InvoiceRepository
from paygate.kit.clock import utcnow
from paygate.kit.deps import SessionDep
from paygate.kit.pagination import PageParams
from paygate.payments.listing import PaymentListing
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.web.invoice_views import PAYMENT_LABELS, money
from paygate.web.render import PageRoute, render
from paygate.web.session import User

router = APIRouter(route_class=PageRoute)

# A payment still processing after this long has an unknown outcome until paygate (the
# sweeper, or "Check status") asks the gateway.
STUCK_AFTER = timedelta(minutes=15)


@dataclass(frozen=True)
class Tile:
    template: str
    values: dict[str, Any] = field(default_factory=dict)
    wide: bool = False


TileSource = Callable[[AsyncSession, AuthContext], Awaitable[Tile | None]]


async def getting_started(session: AsyncSession, auth: AuthContext) -> Tile | None:
    if not auth.can(Permission.GATEWAYS_READ) or not auth.can(Permission.INVOICES_READ):
        return None
    has_gateway = bool(await GatewayRepository(session, auth.company_id).listing())
    has_invoice = await InvoiceRepository(session, auth.company_id).count() > 0
    if has_gateway and has_invoice:
        return None
    return Tile(
        "overview/_start.html", {"has_gateway": has_gateway, "has_invoice": has_invoice}, True
    )


async def collected(session: AsyncSession, auth: AuthContext) -> Tile | None:
    if not auth.can(Permission.PAYMENTS_READ):
        return None
    now = utcnow()
    day_start = datetime.combine(now.date(), time(), tzinfo=UTC)
    rows = await PaymentListing(session, auth.company_id).collected(
        day_start, day_start - timedelta(days=29)
    )
    return Tile("overview/_collected.html", {"rows": rows}, True)


async def needs_attention(session: AsyncSession, auth: AuthContext) -> Tile | None:
    if not auth.can(Permission.PAYMENTS_READ):
        return None
    lines, count = await PaymentListing(session, auth.company_id).needing_attention(
        utcnow() - STUCK_AFTER, limit=6
    )
    return Tile("overview/_attention.html", {"lines": lines, "count": count})


async def failing_gateways(session: AsyncSession, auth: AuthContext) -> Tile | None:
    if not auth.can(Permission.GATEWAYS_READ):
        return None
    gateways = await GatewayRepository(session, auth.company_id).failing_tests()
    return Tile("overview/_gateways.html", {"gateways": gateways})


async def recent_activity(session: AsyncSession, auth: AuthContext) -> Tile | None:
    if not auth.can(Permission.AUDIT_READ):
        return None
    entries, _ = await AuditRepository(session, auth.company_id).search(
        AuditFilters(), PageParams(limit=8)
    )
    return Tile("overview/_activity.html", {"entries": entries}, True)


# In page order.
TILES: list[TileSource] = [
    getting_started,
    collected,
    needs_attention,
    failing_gateways,
    recent_activity,
]


@router.get("/overview")
async def overview_page(request: Request, auth: User, session: SessionDep) -> Response:
    tiles = [tile for source in TILES if (tile := await source(session, auth)) is not None]
    return render(
        request,
        "overview/index.html",
        {"tiles": tiles, "money": money, "payment_labels": PAYMENT_LABELS},
        auth=auth,
    )
