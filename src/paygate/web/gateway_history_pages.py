"""A gateway's history page: its versions (what changed, who, when) with Restore.

It calls the same service as /api/v1/gateways/{id}/versions (gateways/versions.py).
"""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.gateways.service import GatewayService
from paygate.gateways.versions import GatewayVersions
from paygate.kit.deps import SessionDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.security.history_schemas import VersionNumber
from paygate.web.gateway_pages import Gateways
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)


async def _history(
    request: Request,
    auth: AuthContext,
    gateways: GatewayService,
    gateway_id: str,
    *,
    notice: Notice | None = None,
    status_code: int = 200,
) -> Response:
    """The page, or (htmx) its versions panel."""
    gateway, versions = await GatewayVersions(gateways).versions(gateway_id)
    context = {
        "gateway": gateway,
        "versions": versions,
        "current": versions[0].version if versions else 0,
        "can_restore": auth.can(Permission.GATEWAYS_WRITE) and gateway.archived_at is None,
    }
    template = "gateways/_history.html" if is_htmx(request) else "gateways/history.html"
    return render(request, template, context, auth=auth, notice=notice, status_code=status_code)


@router.get("/gateways/{gateway_id}/history")
async def history_page(
    request: Request, gateway_id: ObjectId, auth: User, gateways: Gateways
) -> Response:
    return await _history(request, auth, gateways, gateway_id)


@router.post("/gateways/{gateway_id}/versions/{version}/restore")
async def restore_version(
    request: Request,
    gateway_id: ObjectId,
    version: VersionNumber,
    auth: User,
    gateways: Gateways,
    session: SessionDep,
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    try:
        # A savepoint: a refused restore leaves nothing behind, even in memory.
        async with session.begin_nested():
            restored = await GatewayVersions(gateways).restore(gateway_id, version)
    except Problem as problem:
        # An archived gateway (409) or settings that no longer pass the checks (422).
        if problem.status not in (409, 422):
            raise
        reason = problem.detail or problem.title
        notice = Notice("error", f"Version {version} was not restored. {reason}")
        return await _history(
            request, auth, gateways, gateway_id, notice=notice, status_code=problem.status
        )
    if not is_htmx(request):
        flash(request, "gateway_restored")
        return redirect(f"/gateways/{gateway_id}/history", request)
    notice = Notice(
        "success",
        f"Version {version} restored as version {restored.version.version}. {restored.note}",
    )
    return await _history(request, auth, gateways, gateway_id, notice=notice)
