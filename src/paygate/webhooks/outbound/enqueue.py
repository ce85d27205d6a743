"""Writing an event: one message, one delivery per subscribed endpoint, one job each, all in
the caller's transaction (so they commit with the change that caused them, or not at all)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.ids import new_id
from paygate.webhooks.outbound.events import EventType, message_body
from paygate.webhooks.outbound.models import WebhookDelivery, WebhookEndpoint, WebhookMessage
from paygate.webhooks.outbound.repository import EndpointRepository

DELIVER_TASK = "outbound_webhooks:deliver_webhook"
QUEUE = "webhooks"


async def enqueue_event(
    session: AsyncSession,
    company_id: str,
    event_type: EventType | str,
    data: dict[str, Any],
    *,
    occurred_at: datetime | None = None,
    endpoints: Sequence[WebhookEndpoint] | None = None,
) -> list[str]:
    """Send `event_type` with `data` to every enabled endpoint of the company that wants it;
    returns the delivery ids (none when no endpoint subscribes: nothing is written).
    `endpoints`: the company's enabled endpoints when the caller has read them already.

    `data` must hold no secret and no card data: it is what the company's servers receive.
    Call it inside the transaction of the change the event is about.
    """
    kind = EventType(event_type)
    if endpoints is None:
        endpoints = await EndpointRepository(session, company_id).enabled()
    wanted = [endpoint for endpoint in endpoints if kind.value in endpoint.event_types]
    if not wanted:
        return []
    message = await add_message(session, company_id, kind.value, data, occurred_at or utcnow())
    return [await add_delivery(session, message, endpoint) for endpoint in wanted]


async def add_message(
    session: AsyncSession,
    company_id: str,
    event_type: str,
    data: dict[str, Any],
    occurred_at: datetime,
) -> WebhookMessage:
    message = WebhookMessage(
        id=new_id("msg"),
        company_id=company_id,
        event_type=event_type,
        body=message_body(event_type, data, occurred_at),
    )
    session.add(message)
    await session.flush()
    return message


async def add_delivery(
    session: AsyncSession, message: WebhookMessage, endpoint: WebhookEndpoint
) -> str:
    now = utcnow()
    delivery = WebhookDelivery(
        id=new_id("dlv"),
        company_id=message.company_id,
        endpoint_id=endpoint.id,
        message_id=message.id,
        event_type=message.event_type,
        status="pending",
        trigger="scheduled",
        attempt_count=0,
        next_attempt_at=now,
    )
    session.add(delivery)
    await session.flush()
    await defer_delivery(session, delivery.id)
    return delivery.id


async def defer_delivery(
    session: AsyncSession, delivery_id: str, *, at: datetime | None = None
) -> None:
    """A job that attempts the delivery (at `at`, or now), committed with the session."""
    await defer_in_transaction(
        session, DELIVER_TASK, queue=QUEUE, schedule_at=at, delivery_id=delivery_id
    )
