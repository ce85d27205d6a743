"""Inbound webhooks over HTTP: the receiving endpoint the gateways call, the event log API
(list, read with history, replay, bulk replay) and a gateway's webhook setup."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, status
from fastapi.responses import JSONResponse, Response

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.gateways.service import GatewayService
from paygate.kit.deps import (
    DatabaseDep,
    KeyringDep,
    OriginDep,
    ResolverDep,
    SessionDep,
    SettingsDep,
)
from paygate.kit.errors import PROBLEM_RESPONSES, problem_response
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.webhooks.inbound.receive import WebhookReceiver
from paygate.webhooks.inbound.registration import WebhookRegistration, WebhookSetup
from paygate.webhooks.inbound.repository import EventFilters
from paygate.webhooks.inbound.schemas import (
    BulkReplayCreate,
    BulkReplayOut,
    EventStatus,
    WebhookEventAttemptOut,
    WebhookEventDetail,
    WebhookEventOut,
    WebhookEventPage,
    WebhookRegistrationOut,
    WebhookSetupOut,
)
from paygate.webhooks.inbound.service import EventWithHistory, WebhookEventService

# The gateways call this one; it is outside /api/v1 and its schema (no caller to authorize:
# the signature is the authorization), and documented in docs/technical-guide.md.
receiver_router = APIRouter(include_in_schema=False)
router = APIRouter(prefix="/api/v1", tags=["webhook events"], responses=PROBLEM_RESPONSES)


@receiver_router.post("/webhooks/{gateway_id}")
async def receive_webhook(
    gateway_id: ObjectId,
    request: Request,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    """Verify, store, defer processing; 200 once committed, 400 (stored) when refused.

    No request transaction: the receiver commits what it writes before it answers."""
    state = request.app.state
    receiver = WebhookReceiver(
        database, keyring, settings, state.rate_limits, state.webhook_gateways
    )
    receipt = await receiver.receive(
        gateway_id, await request.body(), request.headers.items(), origin
    )
    if receipt.problem is not None:
        return problem_response(receipt.problem, request)
    return JSONResponse({"received": True, "id": receipt.event_id, "duplicate": receipt.duplicate})


def _events(
    auth: AuthContext,
    session: SessionDep,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> WebhookEventService:
    return WebhookEventService(session, database, keyring, settings, auth)


def reader(
    auth: Annotated[AuthContext, Depends(require(Permission.PAYMENTS_READ))],
    session: SessionDep,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> WebhookEventService:
    return _events(auth, session, database, keyring, settings)


def replayer(
    auth: Annotated[AuthContext, Depends(require(Permission.PAYMENTS_WRITE))],
    session: SessionDep,
    database: DatabaseDep,
    keyring: KeyringDep,
    settings: SettingsDep,
) -> WebhookEventService:
    return _events(auth, session, database, keyring, settings)


Reader = Annotated[WebhookEventService, Depends(reader)]
Replayer = Annotated[WebhookEventService, Depends(replayer)]
Short = Annotated[str | None, Query(max_length=100)]


def event_filters(
    gateway_id: Annotated[str | None, Query(max_length=40)] = None,
    type: Short = None,
    status: Annotated[EventStatus | None, Query()] = None,
    received_from: Annotated[
        datetime | None, Query(description="Received at or after this time")
    ] = None,
    received_to: Annotated[datetime | None, Query(description="Received before this time")] = None,
) -> EventFilters:
    return EventFilters(gateway_id, type, status, received_from, received_to)


def detail_of(found: EventWithHistory) -> WebhookEventDetail:
    event = found.event
    return WebhookEventDetail(
        **WebhookEventOut.of(event).model_dump(),
        headers=dict(event.headers or {}),
        body=bytes(event.body).decode("utf-8", errors="replace"),
        history=[WebhookEventAttemptOut.of(a) for a in found.attempts],
    )


@router.get("/webhook-events", response_model=WebhookEventPage)
async def list_webhook_events(
    events: Reader,
    filters: Annotated[EventFilters, Depends(event_filters)],
    paging: Annotated[PageParams, Depends(page_params)],
) -> WebhookEventPage:
    """Received gateway webhooks, newest first (cursor paging)."""
    rows, cursor = await events.search(filters, paging)
    return WebhookEventPage(
        data=[WebhookEventOut.of(row) for row in rows],
        has_more=cursor is not None,
        next_cursor=cursor,
    )


@router.get("/webhook-events/{event_id}", response_model=WebhookEventDetail)
async def get_webhook_event(event_id: ObjectId, events: Reader) -> WebhookEventDetail:
    """One event as received (headers redacted) with its processing history."""
    return detail_of(await events.get(event_id))


@router.post(
    "/webhook-events/{event_id}/replay",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=WebhookEventOut,
)
async def replay_webhook_event(event_id: ObjectId, events: Replayer) -> WebhookEventOut:
    """Re-verify with the gateway's current secrets and process again (in a job)."""
    return WebhookEventOut.of(await events.replay(event_id))


@router.post(
    "/webhook-events/bulk-replays",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=BulkReplayOut,
)
async def start_bulk_replay(body: BulkReplayCreate, events: Replayer) -> BulkReplayOut:
    """Replay every failed event received in [received_from, received_to), as a job."""
    run = await events.start_bulk_replay(body.received_from, body.received_to, body.gateway_id)
    return BulkReplayOut.of(run)


@router.get("/webhook-events/bulk-replays/{replay_id}", response_model=BulkReplayOut)
async def get_bulk_replay(replay_id: ObjectId, events: Reader) -> BulkReplayOut:
    return BulkReplayOut.of(await events.bulk_replay(replay_id))


# --- a gateway's webhook setup -----------------------------------------------------------


def _registration(
    auth: AuthContext,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> WebhookRegistration:
    return WebhookRegistration(GatewayService(session, keyring, settings, auth, resolver=resolver))


def setup_reader(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> WebhookRegistration:
    return _registration(auth, session, keyring, settings, resolver)


def registrar(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_WRITE))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> WebhookRegistration:
    return _registration(auth, session, keyring, settings, resolver)


def setup_out(setup: WebhookSetup) -> WebhookSetupOut:
    return WebhookSetupOut(
        gateway_id=setup.gateway.id,
        url=setup.url,
        events=list(setup.guide.events),
        steps=list(setup.guide.steps),
        notes=list(setup.guide.notes),
        secret_field=setup.guide.secret_field,
        configured=setup.configured,
        can_register=setup.guide.can_register,
    )


@router.get("/gateways/{gateway_id}/webhook", response_model=WebhookSetupOut, tags=["gateways"])
async def gateway_webhook_setup(
    gateway_id: ObjectId,
    registration: Annotated[WebhookRegistration, Depends(setup_reader)],
) -> WebhookSetupOut:
    """The gateway's webhook URL, the events to subscribe to and the provider's steps."""
    return setup_out(await registration.setup(gateway_id))


@router.post(
    "/gateways/{gateway_id}/webhook/register",
    response_model=WebhookRegistrationOut,
    tags=["gateways"],
)
async def register_gateway_webhook(
    gateway_id: ObjectId,
    registration: Annotated[WebhookRegistration, Depends(registrar)],
) -> WebhookRegistrationOut:
    """Create the webhook endpoint at the provider and store what it answers (encrypted)."""
    setup, registered = await registration.register(gateway_id)
    return WebhookRegistrationOut(
        gateway_id=gateway_id,
        url=setup.url,
        endpoint_id=registered.endpoint_id,
        events=list(registered.events),
        stored=sorted(registered.configuration),
    )
