"""The alert recipients page: who is mailed which gateway alerts (audited changes)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request, Response
from starlette.datastructures import FormData

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.monitoring.schemas import RecipientCreate, RecipientUpdate
from paygate.monitoring.service import MonitoringService
from paygate.monitoring.status import ALERT_KIND_LABELS, AlertKind
from paygate.web.forms import FormErrors, parse, text, texts
from paygate.web.render import PageRoute, redirect, render
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)

KIND_HELP = {
    AlertKind.GATEWAY_DOWN: "once per outage, when checks fail the set number of times",
    AlertKind.GATEWAY_UP: "once, when the gateway answers again, with how long it was down",
    AlertKind.FAILURE_SPIKE: "when live payments fail for technical reasons over the threshold",
    AlertKind.TLS_EXPIRY: "a custom gateway's certificate expires within 14 days",
}


async def monitoring_service(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep
) -> MonitoringService:
    await need(request, auth, Permission.GATEWAYS_READ)
    return MonitoringService(session, settings, auth)


Monitoring = Annotated[MonitoringService, Depends(monitoring_service)]


async def _page(
    request: Request,
    auth: AuthContext,
    monitoring: MonitoringService,
    *,
    errors: FormErrors | None = None,
    values: dict[str, Any] | None = None,
    status_code: int = 200,
) -> Response:
    context = {
        "recipients": await monitoring.list_recipients(),
        "kinds": [(k.value, ALERT_KIND_LABELS[k], KIND_HELP[k]) for k in AlertKind],
        "errors": errors or FormErrors(),
        "values": values or {"email": "", "kinds": [k.value for k in AlertKind]},
        "can_edit": auth.can(Permission.GATEWAYS_WRITE),
    }
    return render(request, "health/alerts.html", context, auth=auth, status_code=status_code)


@router.get("/health/alerts")
async def alerts_page(request: Request, auth: User, monitoring: Monitoring) -> Response:
    return await _page(request, auth, monitoring)


def _kinds(form: FormData) -> list[str]:
    return texts(form, "kinds")


@router.post("/health/alerts")
async def add_recipient(request: Request, auth: User, monitoring: Monitoring) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    form = await request.form()
    values = {"email": text(form, "email").strip(), "kinds": _kinds(form)}
    try:
        await monitoring.add_recipient(parse(RecipientCreate, values))
    except Problem as problem:
        if problem.status not in (409, 422):
            raise
        labels = {"email": "Email address", "kinds": "Alerts"}
        errors = FormErrors.from_problem(problem, ["email", "kinds"], labels=labels)
        if problem.status == 409:
            errors = FormErrors(fields={"email": [problem.detail or "Already added."]})
        return await _page(request, auth, monitoring, errors=errors, values=values, status_code=422)
    flash(request, "alert_recipient_added")
    return redirect("/health/alerts", request)


@router.post("/health/alerts/{recipient_id}")
async def update_recipient(
    request: Request, recipient_id: ObjectId, auth: User, monitoring: Monitoring
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    form = await request.form()
    await monitoring.update_recipient(recipient_id, parse(RecipientUpdate, {"kinds": _kinds(form)}))
    flash(request, "alert_recipient_saved")
    return redirect("/health/alerts", request)


@router.post("/health/alerts/{recipient_id}/delete")
async def remove_recipient(
    request: Request, recipient_id: ObjectId, auth: User, monitoring: Monitoring
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    await monitoring.remove_recipient(recipient_id)
    flash(request, "alert_recipient_removed")
    return redirect("/health/alerts", request)
