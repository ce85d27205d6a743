"""The event types a company can subscribe to, and the body every delivery carries.

A body is `{"type": ..., "timestamp": ..., "data": {...}}` (the Standard Webhooks payload
shape). `data` is built from an allow-list of fields: never a secret, never card data.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any


class EventType(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    PAYMENT_REFUNDED = "payment.refunded"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    INVOICE_PAID = "invoice.paid"
    PAYMENT_DISPUTED = "payment.disputed"
    GATEWAY_DOWN = "gateway.down"
    GATEWAY_UP = "gateway.up"


# Sent by "Send test event" to one endpoint only, whatever it subscribes to. A type of its
# own, so a receiver never mistakes a test for a real payment.
TEST_EVENT_TYPE = "webhook.test"

EVENT_DESCRIPTIONS: dict[EventType, str] = {
    EventType.PAYMENT_SUCCEEDED: "A payment was collected",
    EventType.PAYMENT_FAILED: "A payment failed (declined, or the gateway could not take it)",
    EventType.PAYMENT_REFUNDED: "Money of a payment was refunded (each refund, full or partial)",
    EventType.REFUND_SUCCEEDED: "A refund went through",
    EventType.REFUND_FAILED: "A refund was refused or failed",
    EventType.INVOICE_PAID: "An invoice was paid in full",
    EventType.PAYMENT_DISPUTED: "The customer disputed a payment (a chargeback)",
    EventType.GATEWAY_DOWN: "A gateway stopped answering its health checks",
    EventType.GATEWAY_UP: "A gateway answers its health checks again",
}


def timestamp_text(moment: datetime) -> str:
    """ISO 8601 in UTC with a Z, as the body's `timestamp` and every time inside `data`."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return timestamp_text(value)
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def message_body(event_type: str, data: dict[str, Any], occurred_at: datetime) -> str:
    """The exact bytes (as text) every attempt of every endpoint sends and signs."""
    return json.dumps(
        {"type": event_type, "timestamp": timestamp_text(occurred_at), "data": _plain(data)},
        separators=(",", ":"),
        ensure_ascii=False,
    )
