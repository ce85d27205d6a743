"""The outbound webhooks JSON API: endpoints, their secrets and versions, delivery logs,
redelivery."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.clock import utcnow
from paygate.kit.deps import KeyringDep, ResolverDep, SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.security.history_schemas import RestoreOut, VersionNumber, VersionOut
from paygate.webhooks.outbound.events import EVENT_DESCRIPTIONS, EventType
from paygate.webhooks.outbound.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from paygate.webhooks.outbound.schemas import (
    AttemptOut,
    DeliveryDetail,
    DeliveryOut,
    DeliveryPage,
    DeliveryStatus,
    EndpointCreate,
    EndpointCreated,
    EndpointDeleted,
    EndpointOut,
    EndpointRestored,
    EndpointUpdate,
    EndpointVersionOut,
    EventTypeOut,
    SecretOut,
    SecretRotate,
    SecretRotated,
)
from paygate.webhooks.outbound.service import DeliveryView, EndpointService, previous_until
from paygate.webhooks.outbound.versions import EndpointVersions

router = APIRouter(prefix="/api/v1", tags=["webhook endpoints"], responses=PROBLEM_RESPONSES)


def _service(
    auth: AuthContext,
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> EndpointService:
    return EndpointService(session, keyring, settings, auth, resolver=resolver)


def reader(
    auth: Annotated[AuthContext, Depends(require(Permission.WEBHOOKS_READ))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> EndpointService:
    return _service(auth, session, keyring, settings, resolver)


def writer(
    auth: Annotated[AuthContext, Depends(require(Permission.WEBHOOKS_WRITE))],
    session: SessionDep,
    keyring: KeyringDep,
    settings: SettingsDep,
    resolver: ResolverDep,
) -> EndpointService:
    return _service(auth, session, keyring, settings, resolver)


Reader = Annotated[EndpointService, Depends(reader)]
Writer = Annotated[EndpointService, Depends(writer)]


def endpoint_out(endpoint: WebhookEndpoint) -> EndpointOut:
    hint = endpoint.secret_hint
    return EndpointOut(
        id=endpoint.id,
        url=endpoint.url,
        description=endpoint.description,
        event_types=list(endpoint.event_types),
        enabled=endpoint.enabled,
        disabled_reason=endpoint.disabled_reason,
        disabled_at=endpoint.disabled_at,
        failing_since=endpoint.failing_since,
        secret=SecretOut(
            masked=hint["masked"],
            changed_at=hint["changed_at"],
            previous_valid_until=previous_until(endpoint, utcnow()),
        ),
        created_at=endpoint.created_at,
        updated_at=endpoint.updated_at,
    )


def delivery_out(delivery: WebhookDelivery) -> DeliveryOut:
    return DeliveryOut(
        id=delivery.id,
        endpoint_id=delivery.endpoint_id,
        message_id=delivery.message_id,
        event_type=delivery.event_type,
        status=delivery.status,
        attempt_count=delivery.attempt_count,
        next_attempt_at=delivery.next_attempt_at if delivery.status == "pending" else None,
        last_attempt_at=delivery.last_attempt_at,
        last_status_code=delivery.last_status_code,
        last_error=delivery.last_error,
        created_at=delivery.created_at,
        completed_at=delivery.completed_at,
    )


def attempt_out(attempt: WebhookAttempt) -> AttemptOut:
    return AttemptOut(
        id=attempt.id,
        attempt_number=attempt.attempt_number,
        trigger=attempt.trigger,
        url=attempt.url,
        started_at=attempt.started_at,
        latency_ms=attempt.latency_ms,
        status_code=attempt.status_code,
        response_body=attempt.response_body,
        error=attempt.error,
        succeeded=attempt.succeeded,
        next_attempt_at=attempt.next_attempt_at,
    )


def delivery_detail(view: DeliveryView) -> DeliveryDetail:
    return DeliveryDetail(
        **delivery_out(view.delivery).model_dump(),
        payload=view.payload,
        attempts=[attempt_out(a) for a in view.attempts],
    )


@router.get("/webhook-event-types", response_model=list[EventTypeOut])
async def list_event_types(
    auth: Annotated[AuthContext, Depends(require(Permission.WEBHOOKS_READ))],
) -> list[EventTypeOut]:
    return [EventTypeOut(type=t.value, description=EVENT_DESCRIPTIONS[t]) for t in EventType]


@router.get("/webhook-endpoints", response_model=list[EndpointOut])
async def list_endpoints(endpoints: Reader) -> list[EndpointOut]:
    return [endpoint_out(e) for e in await endpoints.list_all()]


@router.post(
    "/webhook-endpoints", status_code=status.HTTP_201_CREATED, response_model=EndpointCreated
)
async def create_endpoint(body: EndpointCreate, endpoints: Writer) -> EndpointCreated:
    """Creates the endpoint; `signing_secret` is in this answer only."""
    endpoint, secret = await endpoints.create(body)
    return EndpointCreated(**endpoint_out(endpoint).model_dump(), signing_secret=secret)


@router.get("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def get_endpoint(endpoint_id: ObjectId, endpoints: Reader) -> EndpointOut:
    return endpoint_out(await endpoints.get(endpoint_id))


@router.patch("/webhook-endpoints/{endpoint_id}", response_model=EndpointOut)
async def update_endpoint(
    endpoint_id: ObjectId, body: EndpointUpdate, endpoints: Writer
) -> EndpointOut:
    return endpoint_out(await endpoints.update(endpoint_id, body))


@router.delete("/webhook-endpoints/{endpoint_id}", response_model=EndpointDeleted)
async def delete_endpoint(endpoint_id: ObjectId, endpoints: Writer) -> EndpointDeleted:
    """Deletes the endpoint and its delivery log."""
    await endpoints.delete(endpoint_id)
    return EndpointDeleted(id=endpoint_id)


@router.post("/webhook-endpoints/{endpoint_id}/rotate-secret", response_model=SecretRotated)
async def rotate_secret(
    endpoint_id: ObjectId, endpoints: Writer, body: SecretRotate | None = None
) -> SecretRotated:
    """A new signing secret (in this answer only); deliveries carry a signature with the old
    one too until the grace period ends."""
    endpoint, secret = await endpoints.rotate_secret(endpoint_id, body or SecretRotate())
    return SecretRotated(endpoint=endpoint_out(endpoint), signing_secret=secret)


@router.get("/webhook-endpoints/{endpoint_id}/versions", response_model=list[VersionOut])
async def list_versions(endpoint_id: ObjectId, endpoints: Reader) -> list[VersionOut]:
    """Newest first: every change made a version."""
    _, versions = await EndpointVersions(endpoints).versions(endpoint_id)
    return [VersionOut.of(v) for v in versions]


@router.get(
    "/webhook-endpoints/{endpoint_id}/versions/{version}", response_model=EndpointVersionOut
)
async def get_version(
    endpoint_id: ObjectId, version: VersionNumber, endpoints: Reader
) -> EndpointVersionOut:
    """The settings as they were after that change; the secret as its mask only."""
    found = await EndpointVersions(endpoints).version(endpoint_id, version)
    return EndpointVersionOut.model_validate(
        {**VersionOut.of(found).model_dump(), **found.snapshot}
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/versions/{version}/restore",
    response_model=EndpointRestored,
)
async def restore_version(
    endpoint_id: ObjectId, version: VersionNumber, endpoints: Writer
) -> EndpointRestored:
    """Put that version's settings back (recorded as a new version). Versions hold no
    secrets: the endpoint keeps signing with its current secret."""
    restored = await EndpointVersions(endpoints).restore(endpoint_id, version)
    return EndpointRestored(
        **endpoint_out(restored.target).model_dump(), **RestoreOut.fields_of(restored)
    )


@router.post(
    "/webhook-endpoints/{endpoint_id}/test",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
)
async def send_test_event(endpoint_id: ObjectId, endpoints: Writer) -> DeliveryOut:
    """Queues a `webhook.test` event to this endpoint only."""
    return delivery_out(await endpoints.send_test(endpoint_id))


@router.get("/webhook-endpoints/{endpoint_id}/deliveries", response_model=DeliveryPage)
async def list_deliveries(
    endpoint_id: ObjectId,
    endpoints: Reader,
    page: Annotated[PageParams, Depends(page_params)],
    status_: Annotated[DeliveryStatus | None, Query(alias="status")] = None,
    event_type: Annotated[str | None, Query(max_length=40)] = None,
) -> DeliveryPage:
    rows, cursor = await endpoints.deliveries_of(
        endpoint_id, page, status=status_, event_type=event_type
    )
    return DeliveryPage(data=[delivery_out(d) for d in rows], next_cursor=cursor)


@router.get(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}", response_model=DeliveryDetail
)
async def get_delivery(
    endpoint_id: ObjectId, delivery_id: ObjectId, endpoints: Reader
) -> DeliveryDetail:
    return delivery_detail(await endpoints.delivery(endpoint_id, delivery_id))


@router.post(
    "/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}/redeliver",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=DeliveryOut,
)
async def redeliver(endpoint_id: ObjectId, delivery_id: ObjectId, endpoints: Writer) -> DeliveryOut:
    """Attempts the delivery again now (same webhook-id)."""
    return delivery_out(await endpoints.redeliver(endpoint_id, delivery_id))
