"""The webhook event log pages: received gateway events with filters and paging, one event
with its processing history and a replay button, bulk replays of failed events with a
progress bar, and "Register with the provider" from a gateway's card."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request, Response

from paygate.accounts.permissions import Permission
from paygate.gateways.repository import GatewayRepository
from paygate.gateways.service import GatewayService
from paygate.kit.deps import DatabaseDep, KeyringDep, ResolverDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams
from paygate.web.forms import FormErrors, day_range, text
from paygate.web.gateway_pages import card_of
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, flash, need
from paygate.webhooks.inbound.models import WebhookReplay
from paygate.webhooks.inbound.registration import WebhookRegistration
from paygate.webhooks.inbound.repository import EventFilters
from paygate.webhooks.inbound.service import WebhookEventService, replay_percent

router = APIRouter(route_class=PageRoute)

PAGE_SIZE = 50
STATUSES = ("pending", "processed", "ignored", "unmatched", "failed", "rejected")
Short = Annotated[str, Query(max_length=100)]


async def event_service(
    request: Request,
    auth: User,
    session: SessionDep,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> WebhookEventService:
    await need(request, auth, Permission.PAYMENTS_READ)
    return WebhookEventService(session, database, keyring, settings, auth)


Events = Annotated[WebhookEventService, Depends(event_service)]


@router.get("/webhook-events")
async def events_page(
    request: Request,
    auth: User,
    events: Events,
    session: SessionDep,
    gateway: Annotated[str, Query(max_length=40)] = "",
    type: Short = "",
    status: Annotated[str, Query(max_length=20)] = "",
    since: Annotated[str, Query(max_length=10)] = "",
    until: Annotated[str, Query(max_length=10)] = "",
    cursor: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    values = {
        "gateway": gateway.strip(),
        "type": type.strip(),
        "status": status.strip() if status.strip() in STATUSES else "",
        "since": since.strip(),
        "until": until.strip(),
    }
    errors = FormErrors()
    since_at, until_at = day_range(values["since"], values["until"], errors)
    filters = EventFilters(
        gateway_id=values["gateway"] or None,
        event_type=values["type"] or None,
        status=values["status"] or None,
        received_from=since_at,
        received_to=until_at,
    )
    rows, next_cursor = await events.search(
        filters, PageParams(limit=PAGE_SIZE, cursor=cursor or None)
    )
    gateways = list(await GatewayRepository(session, auth.company_id).listing())
    active = {k: v for k, v in values.items() if v}
    latest = await events.latest_bulk_replay()
    context = {
        "rows": rows,
        "values": values,
        "errors": errors,
        "filtered": bool(active),
        "gateways": gateways,
        "gateway_names": {g.id: g.name for g in gateways},
        "statuses": STATUSES,
        "types": await events.types_seen(),
        "older_url": f"/webhook-events?{urlencode({**active, 'cursor': next_cursor})}"
        if next_cursor
        else None,
        "newest_url": f"/webhook-events?{urlencode(active)}" if cursor else None,
        "run": latest,
        "percent": replay_percent(latest) if latest else 0,
    }
    return render(request, "webhooks/index.html", context, auth=auth)


@router.get("/webhook-events/{event_id}")
async def event_page(request: Request, event_id: ObjectId, auth: User, events: Events) -> Response:
    context = await _detail_context(events, event_id)
    return render(request, "webhooks/detail.html", context, auth=auth)


@router.post("/webhook-events/{event_id}/replay")
async def replay_event(
    request: Request, event_id: ObjectId, auth: User, events: Events, session: SessionDep
) -> Response:
    await need(request, auth, Permission.PAYMENTS_WRITE)
    try:
        async with session.begin_nested():
            await events.replay(event_id)
    except Problem as problem:
        if problem.status not in (409, 503):
            raise
        notice = Notice("error", problem.detail or problem.title)
        return await _detail(request, auth, event_id, events, notice, "webhook_replay_refused")
    notice = Notice("success", "Replay queued: the event is processed again in a moment.")
    return await _detail(request, auth, event_id, events, notice, "webhook_replayed")


async def _detail_context(events: WebhookEventService, event_id: str) -> dict[str, object]:
    found = await events.get(event_id)
    return {
        "event": found.event,
        "attempts": found.attempts,
        "body": bytes(found.event.body).decode("utf-8", errors="replace"),
    }


async def _detail(
    request: Request,
    auth: User,
    event_id: str,
    events: WebhookEventService,
    notice: Notice,
    flash_key: str,
) -> Response:
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect(f"/webhook-events/{event_id}", request)
    # htmx swaps the event's status panel; the notice goes to the page's notices.
    context = await _detail_context(events, event_id)
    return render(request, "webhooks/_status.html", context, auth=auth, notice=notice)


# --- bulk replays -------------------------------------------------------------------------


@router.post("/webhook-events/bulk-replays")
async def start_bulk_replay(
    request: Request, auth: User, events: Events, session: SessionDep
) -> Response:
    await need(request, auth, Permission.PAYMENTS_WRITE)
    form = await request.form()
    errors = FormErrors()
    since_at, until_at = day_range(text(form, "from_day"), text(form, "to_day"), errors)
    gateway_id = text(form, "gateway") or None
    notice: Notice
    run: WebhookReplay | None
    if errors.fields or since_at is None or until_at is None:
        run = await events.latest_bulk_replay()
        notice = Notice("error", "Choose the first and the last day to replay (YYYY-MM-DD).")
    else:
        try:
            async with session.begin_nested():
                run = await events.start_bulk_replay(since_at, until_at, gateway_id)
            notice = Notice("success", f"Replaying {run.total} failed events.")
        except Problem as problem:
            if problem.status not in (404, 409, 422):
                raise
            run = await events.latest_bulk_replay()
            notice = Notice("error", problem.detail or problem.title)
    if not is_htmx(request):
        flash(request, "webhook_bulk_replay")
        return redirect("/webhook-events", request)
    context = {"run": run, "percent": replay_percent(run) if run else 0}
    return render(request, "webhooks/_bulk.html", context, auth=auth, notice=notice)


@router.get("/webhook-events/bulk-replays/{replay_id}")
async def bulk_replay_progress(
    request: Request, replay_id: ObjectId, auth: User, events: Events
) -> Response:
    run = await events.bulk_replay(replay_id)
    if not is_htmx(request):
        return redirect("/webhook-events", request)
    context = {"run": run, "percent": replay_percent(run)}
    return render(request, "webhooks/_bulk.html", context, auth=auth)


# --- register with the provider (from a gateway's card) ---------------------------------


@router.post("/gateways/{gateway_id}/webhook/register")
async def register_webhook(
    request: Request,
    gateway_id: ObjectId,
    auth: User,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> Response:
    await need(request, auth, Permission.GATEWAYS_WRITE)
    gateways = GatewayService(session, keyring, settings, auth, resolver=resolver)
    try:
        async with session.begin_nested():
            _, registered = await WebhookRegistration(gateways).register(gateway_id)
        notice = Notice(
            "success",
            f"Registered with the provider (endpoint {registered.endpoint_id}); its signing "
            "setting is stored.",
        )
    except Problem as problem:
        if problem.status != 409:
            raise
        notice = Notice("error", problem.detail or problem.title)
    gateway = await gateways.get(gateway_id)
    if not is_htmx(request):
        flash(request, "webhook_registered")
        return redirect("/gateways", request)
    return render(
        request,
        "gateways/_card.html",
        {"card": card_of(gateway, gateways)},
        auth=auth,
        notice=notice,
    )
