"""The failed transaction log page: every failed payment attempt and refund, filterable,
newest first, each linked to its invoice and payment."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep, SettingsDep
from paygate.kit.pagination import PageParams
from paygate.monitoring.failures import FailureFilters
from paygate.monitoring.service import MonitoringService
from paygate.web.forms import FormErrors, day_range
from paygate.web.render import PageRoute, render
from paygate.web.session import User, need

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
Short = Annotated[str, Query(max_length=60)]
KINDS = {"": "Any", "decline": "Declines", "technical": "Technical failures"}
TYPES = {"": "Payments and refunds", "payment": "Payments", "refund": "Refunds"}


@router.get("/health/failures")
async def failures_page(
    request: Request,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    gateway_id: Short = "",
    type: Short = "",
    failure_kind: Short = "",
    code: Short = "",
    since: Short = "",
    until: Short = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    await need(request, auth, Permission.PAYMENTS_READ)
    monitoring = MonitoringService(session, settings, auth)
    values = {
        "gateway_id": gateway_id.strip(),
        "type": type.strip() if type.strip() in TYPES else "",
        "failure_kind": failure_kind.strip() if failure_kind.strip() in KINDS else "",
        "code": code.strip()[:40],
        "since": since.strip(),
        "until": until.strip(),
    }
    errors = FormErrors()
    since_at, until_at = day_range(values["since"], values["until"], errors)
    filters = FailureFilters(
        gateway_id=values["gateway_id"] or None,
        type=values["type"] or None,
        failure_kind=values["failure_kind"] or None,
        code=values["code"] or None,
        since=since_at,
        until=until_at,
    )
    rows, next_cursor = await monitoring.failures(
        filters, PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    )
    gateways = [(g.gateway_id, g.name) for g in await monitoring.summaries()]
    active = {k: v for k, v in values.items() if v}
    return render(
        request,
        "health/failures.html",
        {
            "rows": rows,
            "values": values,
            "errors": errors,
            "filtered": bool(active),
            "gateways": gateways,
            "kinds": KINDS,
            "types": TYPES,
            "older_url": f"/health/failures?{urlencode({**active, 'cursor': next_cursor})}"
            if next_cursor
            else None,
            "newest_url": f"/health/failures?{urlencode(active)}" if cursor else None,
        },
        auth=auth,
    )
