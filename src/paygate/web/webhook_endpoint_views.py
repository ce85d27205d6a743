"""What the webhook endpoint pages show: the endpoints list, and one endpoint with its
delivery log (paged, filtered by status), attempts, payloads and versions."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from paygate.kit.clock import utcnow
from paygate.kit.pagination import PageParams
from paygate.web.forms import FormErrors
from paygate.web.webhook_endpoint_forms import form_values
from paygate.webhooks.outbound.events import EVENT_DESCRIPTIONS, EventType
from paygate.webhooks.outbound.models import WebhookEndpoint
from paygate.webhooks.outbound.service import EndpointService, previous_until
from paygate.webhooks.outbound.versions import EndpointVersions

STATUSES = {"pending": "Pending", "succeeded": "Delivered", "failed": "Failed"}
PAGE_SIZE = 25
GRACE_CHOICES = [
    ("24", "24 hours"),
    ("1", "1 hour"),
    ("72", "3 days"),
    ("168", "7 days"),
    ("0", "Not at all: stop the old secret now (after a leak)"),
]


def _common() -> dict[str, Any]:
    return {
        "event_types": list(EventType),
        "event_descriptions": EVENT_DESCRIPTIONS,
        "now": utcnow(),
        "previous_until": previous_until,
        "statuses": STATUSES,
        "grace_choices": GRACE_CHOICES,
    }


async def list_context(endpoints: EndpointService, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        **_common(),
        "endpoints": await endpoints.list_all(),
        "errors": FormErrors(),
        "values": form_values(None),
        "created": None,
    }
    context.update(extra)
    return context


async def endpoint_context(
    endpoints: EndpointService,
    endpoint: WebhookEndpoint,
    *,
    status: str | None = None,
    cursor: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    deliveries, next_cursor = await endpoints.deliveries_of(
        endpoint.id, PageParams(limit=PAGE_SIZE, cursor=cursor), status=status
    )
    filters = {"status": status} if status else {}
    context: dict[str, Any] = {
        **_common(),
        "endpoint": endpoint,
        "deliveries": deliveries,
        "attempts": await endpoints.attempts_of(deliveries),
        "payloads": await endpoints.payloads_of(deliveries),
        "status": status,
        "next_url": (
            f"/webhook-endpoints/{endpoint.id}?{urlencode({**filters, 'cursor': next_cursor})}"
            if next_cursor
            else None
        ),
        "first_url": f"/webhook-endpoints/{endpoint.id}?{urlencode(filters)}" if cursor else None,
        "errors": FormErrors(),
        "values": form_values(None, endpoint),
        "rotated": None,
        "versions": (await EndpointVersions(endpoints).versions(endpoint.id))[1],
    }
    context.update(extra)
    return context
