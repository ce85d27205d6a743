"""The webhooks pages: endpoints (added with the secret shown once), one endpoint's settings,
secret rotation, history with restore, test event and delivery log with redelivery. They
call the same services as the JSON API (webhooks/outbound/service.py, versions.py); the
form fields are read in webhook_endpoint_forms.py, the pages' contents gathered in
webhook_endpoint_views.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response

from paygate.accounts.auth import AuthContext
from paygate.accounts.permissions import Permission
from paygate.kit.deps import KeyringDep, ResolverDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.security.history_schemas import VersionNumber
from paygate.web.forms import parse, text
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, need
from paygate.web.webhook_endpoint_forms import form_errors, form_values
from paygate.web.webhook_endpoint_views import STATUSES, endpoint_context, list_context
from paygate.webhooks.outbound.schemas import EndpointCreate, EndpointUpdate, SecretRotate
from paygate.webhooks.outbound.service import EndpointService
from paygate.webhooks.outbound.versions import EndpointVersions

PAGES = "webhook_endpoints"  # the templates folder of these pages
router = APIRouter(route_class=PageRoute)


async def endpoint_service(
    request: Request,
    auth: User,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> EndpointService:
    await need(request, auth, Permission.WEBHOOKS_READ)
    return EndpointService(session, keyring, settings, auth, resolver=resolver)


Endpoints = Annotated[EndpointService, Depends(endpoint_service)]


# --- the endpoints list ------------------------------------------------------------------


def _list_response(
    request: Request,
    auth: AuthContext,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    template = (
        "webhook_endpoints/_section.html" if is_htmx(request) else "webhook_endpoints/index.html"
    )
    return render(request, template, context, auth=auth, status_code=status_code, notice=notice)


@router.get("/webhook-endpoints")
async def webhooks_page(request: Request, auth: User, endpoints: Endpoints) -> Response:
    return render(request, "webhook_endpoints/index.html", await list_context(endpoints), auth=auth)


@router.post("/webhook-endpoints")
async def create_endpoint(
    request: Request, auth: User, endpoints: Endpoints, session: SessionDep
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    form = await request.form()
    values = form_values(form)
    try:
        # A savepoint: a refused endpoint leaves nothing behind, even in memory.
        async with session.begin_nested():
            body = parse(
                EndpointCreate,
                {
                    "url": values["url"],
                    "description": values["description"] or None,
                    "event_types": values["event_types"],
                },
            )
            endpoint, secret = await endpoints.create(body)
    except Problem as problem:
        if problem.status != 422:
            raise
        context = await list_context(endpoints, errors=form_errors(problem), values=values)
        return _list_response(request, auth, context, status_code=422)
    # The secret is rendered this once, into a no-store response; only its mask is kept.
    context = await list_context(endpoints, created={"endpoint": endpoint, "secret": secret})
    notice = Notice("success", "Endpoint added. Copy its signing secret now.")
    return _list_response(request, auth, context, notice=notice)


# --- one endpoint ---------------------------------------------------------------------------


def _endpoint_response(
    request: Request,
    auth: AuthContext,
    context: dict[str, Any],
    fragment: str,
    *,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    template = (
        f"webhook_endpoints/{fragment}" if is_htmx(request) else "webhook_endpoints/detail.html"
    )
    return render(request, template, context, auth=auth, status_code=status_code, notice=notice)


@router.get("/webhook-endpoints/{endpoint_id}")
async def endpoint_page(
    request: Request,
    endpoint_id: ObjectId,
    auth: User,
    endpoints: Endpoints,
    status: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    endpoint = await endpoints.get(endpoint_id)
    chosen = status if status in STATUSES else None
    context = await endpoint_context(endpoints, endpoint, status=chosen, cursor=cursor)
    template = (
        "webhook_endpoints/_deliveries.html"
        if is_htmx(request)
        else "webhook_endpoints/detail.html"
    )
    return render(request, template, context, auth=auth)


@router.post("/webhook-endpoints/{endpoint_id}/edit")
async def update_endpoint(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints, session: SessionDep
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    form = await request.form()
    values = form_values(form)
    try:
        async with session.begin_nested():
            body = parse(
                EndpointUpdate,
                {
                    "url": values["url"],
                    "description": values["description"],
                    "event_types": values["event_types"],
                    "enabled": values["enabled"],
                },
            )
            endpoint = await endpoints.update(endpoint_id, body)
    except Problem as problem:
        if problem.status != 422:
            raise
        endpoint = await endpoints.get(endpoint_id)
        context = await endpoint_context(
            endpoints, endpoint, errors=form_errors(problem), values=values
        )
        return _endpoint_response(request, auth, context, "_endpoint.html", status_code=422)
    context = await endpoint_context(endpoints, endpoint)
    notice = Notice("success", "Endpoint saved.")
    return _endpoint_response(request, auth, context, "_endpoint.html", notice=notice)


@router.post("/webhook-endpoints/{endpoint_id}/rotate")
async def rotate_secret(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints, session: SessionDep
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    form = await request.form()
    grace = text(form, "grace_period_hours").strip()
    try:
        async with session.begin_nested():
            hours: int | str = int(grace) if grace.isdigit() else grace
            body = parse(SecretRotate, {"grace_period_hours": hours} if grace else {})
            endpoint, secret = await endpoints.rotate_secret(endpoint_id, body)
    except Problem as problem:
        if problem.status != 422:
            raise
        endpoint = await endpoints.get(endpoint_id)
        context = await endpoint_context(endpoints, endpoint)
        notice = Notice("error", "Choose how long the old secret keeps signing: 0 to 168 hours.")
        return _endpoint_response(
            request, auth, context, "_endpoint.html", status_code=422, notice=notice
        )
    context = await endpoint_context(endpoints, endpoint, rotated=secret)
    notice = Notice("success", "New signing secret created. Copy it now.")
    return _endpoint_response(request, auth, context, "_endpoint.html", notice=notice)


@router.post("/webhook-endpoints/{endpoint_id}/versions/{version}/restore")
async def restore_version(
    request: Request,
    endpoint_id: ObjectId,
    version: VersionNumber,
    auth: User,
    endpoints: Endpoints,
    session: SessionDep,
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    try:
        # A savepoint: a refused restore (a URL or event type no longer allowed) leaves
        # nothing behind, even in memory.
        async with session.begin_nested():
            restored = await EndpointVersions(endpoints).restore(endpoint_id, version)
    except Problem as problem:
        if problem.status != 422:
            raise
        context = await endpoint_context(endpoints, await endpoints.get(endpoint_id))
        reason = problem.detail or problem.title
        notice = Notice("error", f"Version {version} was not restored. {reason}")
        return _endpoint_response(
            request, auth, context, "_endpoint.html", status_code=422, notice=notice
        )
    context = await endpoint_context(endpoints, restored.target)
    notice = Notice(
        "success",
        f"Version {version} restored as version {restored.version.version}. {restored.note}",
    )
    return _endpoint_response(request, auth, context, "_endpoint.html", notice=notice)


async def _switch(
    request: Request, endpoint_id: str, auth: AuthContext, endpoints: EndpointService, on: bool
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    endpoint = await endpoints.set_enabled(endpoint_id, on)
    context = await endpoint_context(endpoints, endpoint)
    if on:
        notice = Notice("success", "Endpoint enabled: new events are sent to it again.")
    else:
        notice = Notice("info", "Endpoint disabled: no events are sent to it.")
    return _endpoint_response(request, auth, context, "_endpoint.html", notice=notice)


@router.post("/webhook-endpoints/{endpoint_id}/enable")
async def enable_endpoint(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints
) -> Response:
    return await _switch(request, endpoint_id, auth, endpoints, True)


@router.post("/webhook-endpoints/{endpoint_id}/disable")
async def disable_endpoint(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints
) -> Response:
    return await _switch(request, endpoint_id, auth, endpoints, False)


async def _queue_delivery(
    request: Request,
    endpoint_id: str,
    auth: AuthContext,
    endpoints: EndpointService,
    queue: Callable[[], Awaitable[object]],
    done: str,
) -> Response:
    """Queue a delivery (a test event, a redelivery) and show the log; a refusal (409, say
    the endpoint is disabled) is the notice instead."""
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    try:
        await queue()
        notice = Notice("success", done)
    except Problem as problem:
        if problem.status != 409:
            raise
        notice = Notice("error", problem.detail or problem.title)
    endpoint = await endpoints.get(endpoint_id)
    context = await endpoint_context(endpoints, endpoint)
    return _endpoint_response(request, auth, context, "_deliveries.html", notice=notice)


@router.post("/webhook-endpoints/{endpoint_id}/test")
async def send_test_event(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints
) -> Response:
    return await _queue_delivery(
        request,
        endpoint_id,
        auth,
        endpoints,
        lambda: endpoints.send_test(endpoint_id),
        "Test event queued: it appears in the log below.",
    )


@router.post("/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    request: Request,
    endpoint_id: ObjectId,
    delivery_id: ObjectId,
    auth: User,
    endpoints: Endpoints,
) -> Response:
    return await _queue_delivery(
        request,
        endpoint_id,
        auth,
        endpoints,
        lambda: endpoints.redeliver(endpoint_id, delivery_id),
        "Redelivery queued.",
    )


@router.post("/webhook-endpoints/{endpoint_id}/delete")
async def delete_endpoint(
    request: Request, endpoint_id: ObjectId, auth: User, endpoints: Endpoints
) -> Response:
    await need(request, auth, Permission.WEBHOOKS_WRITE)
    await endpoints.delete(endpoint_id)
    return redirect("/webhook-endpoints", request)
