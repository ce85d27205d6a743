"""API shapes of gateway health, incidents, alert recipients and the failure log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, EmailStr, Field, StrictInt, StringConstraints

from paygate.monitoring.status import AlertKind, HealthStatus, IncidentKind

RecipientEmail = Annotated[EmailStr, StringConstraints(max_length=254)]


class Uptime(BaseModel):
    """Successful checks as a percentage; null without any check in the window."""

    last_24h: float | None
    last_7d: float | None
    last_30d: float | None


class MonitorSettings(BaseModel):
    interval_minutes: int
    failure_threshold: int


class LastCheck(BaseModel):
    at: datetime
    ok: bool
    latency_ms: int
    error_code: str | None
    message: str | None


class TlsCertificate(BaseModel):
    """A custom gateway's TLS certificate, read once a day (null for other gateways)."""

    expires_at: datetime | None
    checked_at: datetime | None
    error: str | None
    expiring_soon: bool


class GatewayHealthSummary(BaseModel):
    gateway_id: str
    name: str
    gateway_type: str
    environment: str
    status: HealthStatus
    status_since: datetime | None
    reason: str | None = Field(description="Why the status is what it is, in words")
    uptime: Uptime
    latency_ms: int | None = Field(description="The last check's latency")
    error_rate_24h: float | None = Field(
        description="Share of live gateway calls failing technically in 24 h (0..1)"
    )
    calls_24h: int
    last_check: LastCheck | None
    next_check_at: datetime | None
    open_incidents: int
    monitor: MonitorSettings


class Heartbeat(BaseModel):
    at: datetime
    ok: bool
    state: Literal["up", "pending", "down"]
    latency_ms: int
    message: str | None


class HourFigures(BaseModel):
    hour: datetime
    checks: int
    check_failures: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    calls: int
    call_errors: int
    error_rate: float | None = Field(description="call_errors / calls; null without calls")


class EvidenceOut(BaseModel):
    model_config = ConfigDict(extra="allow")

    source: Literal["check", "call"]
    at: datetime
    message: str | None = None


class IncidentOut(BaseModel):
    id: str
    gateway_id: str
    kind: IncidentKind
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: int = Field(description="Until now while the incident is open")
    cause: str
    last_message: str | None
    failed_checks: int
    failed_calls: int
    resolution: str | None
    evidence: list[EvidenceOut]


class GatewayHealth(GatewayHealthSummary):
    heartbeats: list[Heartbeat] = Field(description="The last 90 checks, oldest first")
    hours: list[HourFigures]
    incidents: list[IncidentOut] = Field(description="The latest incidents, newest first")
    tls: TlsCertificate | None


class IncidentPage(BaseModel):
    data: list[IncidentOut]
    has_more: bool
    next_cursor: str | None


class MonitorUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    interval_minutes: Annotated[StrictInt, Field(ge=1, le=60)] | None = None
    failure_threshold: Annotated[StrictInt, Field(ge=1, le=10)] | None = None


class RecipientCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: RecipientEmail
    kinds: list[AlertKind] = Field(default_factory=lambda: list(AlertKind), max_length=10)


class RecipientUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kinds: list[AlertKind] = Field(max_length=10)


class RecipientOut(BaseModel):
    id: str
    email: str
    kinds: list[AlertKind]
    created_at: datetime
    updated_at: datetime


class RecipientDeleted(BaseModel):
    id: str
    deleted: bool = True


class FailureOut(BaseModel):
    id: str = Field(description="The payment attempt's or the refund's id")
    type: Literal["payment", "refund"]
    occurred_at: datetime
    payment_id: str
    refund_id: str | None
    invoice_id: str
    gateway_id: str
    gateway_name: str
    amount: int = Field(description="In the currency's minor unit")
    currency: str
    status: str
    code: str | None = Field(description="paygate's normalized decline or error code")
    gateway_code: str | None = Field(description="The gateway's own code")
    message: str | None
    failure_kind: Literal["decline", "technical"]


class FailurePage(BaseModel):
    data: list[FailureOut]
    has_more: bool
    next_cursor: str | None


def evidence_out(items: list[dict[str, Any]]) -> list[EvidenceOut]:
    return [EvidenceOut.model_validate(item) for item in items]
