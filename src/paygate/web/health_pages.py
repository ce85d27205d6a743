"""The Gateway health pages: the dashboard (tiles, heartbeat bars, incidents), one gateway's
health (figures, charts, incidents, its check settings). htmx polls both to stay current."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams
from paygate.monitoring.repository import IncidentFilters
from paygate.monitoring.schemas import (
    GatewayHealth,
    GatewayHealthSummary,
    Heartbeat,
    HourFigures,
    MonitorUpdate,
)
from paygate.monitoring.service import HEARTBEATS, MonitoringService
from paygate.monitoring.status import HealthStatus
from paygate.web.forms import FormErrors, parse, text
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, flash, need

router = APIRouter(route_class=PageRoute)

# Every 30 s: fresh enough for a wall screen, light enough for thousands of tiles.
POLL = "every 30s"
STATUS_LABELS = {
    HealthStatus.UP: "Up",
    HealthStatus.DEGRADED: "Degraded",
    HealthStatus.DOWN: "Down",
    HealthStatus.PAUSED: "Paused",
    HealthStatus.UNKNOWN: "Not checked yet",
}
# The order the dashboard counts them in: what needs attention first.
STATUS_ORDER = (
    HealthStatus.DOWN,
    HealthStatus.DEGRADED,
    HealthStatus.UP,
    HealthStatus.UNKNOWN,
    HealthStatus.PAUSED,
)


async def monitoring_service(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep
) -> MonitoringService:
    await need(request, auth, Permission.GATEWAYS_READ)
    return MonitoringService(session, settings, auth)


Monitoring = Annotated[MonitoringService, Depends(monitoring_service)]


@dataclass(frozen=True)
class Bar:
    """A heartbeat bar: always HEARTBEATS boxes, the missing ones (not yet run) first."""

    beats: list[Heartbeat]
    empty: int
    label: str


def bar_of(beats: list[Heartbeat]) -> Bar:
    failed = sum(1 for b in beats if not b.ok)
    label = f"Last {len(beats)} checks: {len(beats) - failed} succeeded, {failed} failed"
    if not beats:
        label = "No checks yet"
    return Bar(beats[-HEARTBEATS:], max(0, HEARTBEATS - len(beats)), label)


@dataclass(frozen=True)
class Tile:
    health: GatewayHealthSummary
    bar: Bar


def _counts(summaries: list[GatewayHealthSummary]) -> list[tuple[HealthStatus, str, int]]:
    return [
        (status, STATUS_LABELS[status], sum(1 for s in summaries if s.status is status))
        for status in STATUS_ORDER
    ]


async def _dashboard(monitoring: MonitoringService) -> dict[str, Any]:
    summaries = await monitoring.summaries()
    beats = await monitoring.heartbeats([s.gateway_id for s in summaries])
    incidents, _ = await monitoring.list_incidents(IncidentFilters(), PageParams(limit=20))
    names = {s.gateway_id: s.name for s in summaries}
    return {
        "tiles": [Tile(s, bar_of(beats.get(s.gateway_id, []))) for s in summaries],
        "counts": _counts(summaries),
        "incidents": incidents,
        "names": names,
        "labels": STATUS_LABELS,
        "poll": POLL,
    }


@router.get("/health")
async def health_dashboard(request: Request, auth: User, monitoring: Monitoring) -> Response:
    return render(request, "health/index.html", await _dashboard(monitoring), auth=auth)


@router.get("/health/tiles")
async def health_tiles(request: Request, auth: User, monitoring: Monitoring) -> Response:
    """What the dashboard polls: the tiles and incidents, without the page around them."""
    if not is_htmx(request):
        return redirect("/health", request)
    return render(request, "health/_tiles.html", await _dashboard(monitoring), auth=auth)


def chart_data(hours: list[HourFigures]) -> dict[str, list[Any]]:
    """The charts' series, written into a JSON data block by the template's `tojson` (which
    escapes <, > and &, so nothing in it can end the block); health.js reads it."""
    return {
        "labels": [h.hour.strftime("%d %b %H:00") for h in hours],
        "p50": [h.latency_p50_ms for h in hours],
        "p95": [h.latency_p95_ms for h in hours],
        "errorRate": [
            None if h.error_rate is None else round(100 * h.error_rate, 1) for h in hours
        ],
        "checkFailures": [
            round(100 * h.check_failures / h.checks, 1) if h.checks else None for h in hours
        ],
    }


def _window(hours: int) -> int:
    return 168 if hours == 168 else 24


async def _gateway_context(
    monitoring: MonitoringService, gateway_id: str, hours: int
) -> dict[str, Any]:
    health: GatewayHealth = await monitoring.gateway_health(gateway_id, hours=hours)
    return {
        "health": health,
        "bar": bar_of(health.heartbeats),
        "labels": STATUS_LABELS,
        "chart": chart_data(health.hours),
        "hours": hours,
        "poll": POLL,
    }


@router.get("/health/gateways/{gateway_id}")
async def gateway_health_page(
    request: Request,
    gateway_id: ObjectId,
    auth: User,
    monitoring: Monitoring,
    hours: Annotated[int, Query(ge=1, le=168)] = 24,
) -> Response:
    context = await _gateway_context(monitoring, gateway_id, _window(hours))
    context.update(errors=FormErrors(), can_edit=auth.can(Permission.GATEWAYS_WRITE))
    return render(request, "health/gateway.html", context, auth=auth)


@router.get("/health/gateways/{gateway_id}/panel")
async def gateway_health_panel(
    request: Request,
    gateway_id: ObjectId,
    auth: User,
    monitoring: Monitoring,
    hours: Annotated[int, Query(ge=1, le=168)] = 24,
) -> Response:
    if not is_htmx(request):
        return redirect(f"/health/gateways/{gateway_id}", request)
    context = await _gateway_context(monitoring, gateway_id, _window(hours))
    return render(request, "health/_panel.html", context, auth=auth)


@router.post("/health/gateways/{gateway_id}/monitoring")
async def update_monitoring(
    request: Request, gateway_id: ObjectId, auth: User, monitoring: Monitoring
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    form = await request.form()
    values = {
        "interval_minutes": text(form, "interval_minutes").strip(),
        "failure_threshold": text(form, "failure_threshold").strip(),
    }
    try:
        change = parse(
            MonitorUpdate,
            {k: int(v) if v.isdigit() else (v or None) for k, v in values.items()},
        )
        settings = await monitoring.update_monitor(gateway_id, change)
    except Problem as problem:
        if problem.status != 422:
            raise
        errors = FormErrors.from_problem(
            problem,
            list(values),
            labels={"interval_minutes": "Interval", "failure_threshold": "Failures"},
        )
        context = {"gateway_id": gateway_id, "values": values, "errors": errors, "can_edit": True}
        return render(request, "health/_settings.html", context, auth=auth, status_code=422)
    if not is_htmx(request):
        flash(request, "monitoring_saved")
        return redirect(f"/health/gateways/{gateway_id}", request)
    context = {
        "gateway_id": gateway_id,
        "values": settings.model_dump(),
        "errors": FormErrors(),
        "can_edit": True,
    }
    notice = Notice("success", "Check settings saved.")
    return render(request, "health/_settings.html", context, auth=auth, notice=notice)
