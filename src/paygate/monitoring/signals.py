"""What gateway health monitoring announces, inside the transaction that decided it."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from paygate.kit.signals import Signal


@dataclass(frozen=True)
class GatewayStatusChange:
    """A gateway went down (its checks failed `failure_threshold` times in a row) or came
    back up after an outage (one check succeeded).

    `event` names it as outbound webhooks do. `from_status` and `to_status` are health
    statuses (up, degraded, down, paused, unknown): a gateway that recovers while live
    traffic still fails comes back as "degraded". Nothing here is secret: `cause` is the
    error taxonomy's message of the check that failed.
    """

    company_id: str
    gateway_id: str
    gateway_name: str
    gateway_type: str
    environment: str
    event: Literal["gateway.down", "gateway.up"]
    from_status: str
    to_status: str
    incident_id: str
    cause: str
    started_at: datetime  # when the outage began
    ended_at: datetime | None  # when it ended (gateway.up only)
    duration_seconds: int | None  # how long it lasted (gateway.up only)
    occurred_at: datetime


gateway_status_changed: Signal[GatewayStatusChange] = Signal("gateway_status_changed")
