"""API shapes of webhook endpoints, their deliveries and attempts."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from paygate.security.history_schemas import RestoreOut, VersionOut
from paygate.webhooks.outbound.events import EventType

EndpointURL = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=2048)
]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=200)]
GivenSecret = Annotated[str, StringConstraints(max_length=100)]
GraceHours = Annotated[StrictInt, Field(ge=0, le=168)]


class EndpointFields(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: EndpointURL | None = None
    description: Description | None = None
    event_types: list[EventType] | None = Field(default=None, min_length=1, max_length=20)
    enabled: StrictBool | None = None


class EndpointCreate(EndpointFields):
    url: EndpointURL
    event_types: list[EventType] = Field(min_length=1, max_length=20)
    secret: GivenSecret | None = Field(
        default=None,
        description=(
            "Bring your own signing secret (whsec_ + base64 of 24 to 64 bytes), e.g. when "
            "moving from another provider. Left out: paygate generates one."
        ),
    )


class EndpointUpdate(EndpointFields):
    """Fields left out keep their value. Enabling an endpoint paygate disabled after its
    deliveries kept failing starts it afresh."""


class SecretRotate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grace_period_hours: GraceHours | None = Field(
        default=None,
        description=(
            "How long deliveries stay signed with the old secret too, 0 to 168 hours; 0 "
            "stops using it at once (after a leak). Default: 24."
        ),
    )
    secret: GivenSecret | None = Field(
        default=None, description="The new secret (whsec_...); left out: paygate generates one."
    )


class SecretOut(BaseModel):
    masked: str
    changed_at: datetime
    previous_valid_until: datetime | None = Field(
        description="While set, deliveries carry a signature with the previous secret too"
    )


class EndpointOut(BaseModel):
    id: str
    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    disabled_reason: Literal["failing", "manual"] | None = Field(
        description="failing: paygate disabled it after a whole retry schedule failed"
    )
    disabled_at: datetime | None
    failing_since: datetime | None
    secret: SecretOut
    created_at: datetime
    updated_at: datetime


class EndpointCreated(EndpointOut):
    signing_secret: str = Field(description="Shown this once: store it to verify deliveries")


class SecretRotated(BaseModel):
    endpoint: EndpointOut
    signing_secret: str = Field(description="The new secret, shown this once")


class EndpointRestored(EndpointOut, RestoreOut):
    """The endpoint after a version's settings were put back; its signing secret was kept."""


class SecretVersionOut(BaseModel):
    masked: str
    changed_at: datetime


class EndpointVersionOut(VersionOut):
    """An endpoint as it was after a change; the signing secret as its mask only."""

    url: str
    description: str | None
    event_types: list[str]
    enabled: bool
    secret: SecretVersionOut = Field(
        description="The mask and change time; never the value, so a restore keeps the "
        "current secret"
    )


class EndpointDeleted(BaseModel):
    id: str
    deleted: bool = True


class EventTypeOut(BaseModel):
    type: str
    description: str


class AttemptOut(BaseModel):
    id: str
    attempt_number: int
    trigger: str
    url: str
    started_at: datetime
    latency_ms: float | None
    status_code: int | None
    response_body: str | None = Field(description="The first 2 KB of the answer")
    error: str | None
    succeeded: bool
    next_attempt_at: datetime | None


class DeliveryOut(BaseModel):
    id: str
    endpoint_id: str
    message_id: str = Field(description="The webhook-id header: the same on every attempt")
    event_type: str
    status: Literal["pending", "succeeded", "failed"]
    attempt_count: int
    next_attempt_at: datetime | None
    last_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str | None
    created_at: datetime
    completed_at: datetime | None


class DeliveryDetail(DeliveryOut):
    payload: str = Field(description="The body as sent (JSON text)")
    attempts: list[AttemptOut]


class DeliveryPage(BaseModel):
    data: list[DeliveryOut]
    next_cursor: str | None


DeliveryStatus = Literal["pending", "succeeded", "failed"]
