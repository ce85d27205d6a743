"""API shapes of received webhooks, their processing history, bulk replays and a
gateway's webhook setup."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints

from paygate.kit.ids import ID_MAX_LENGTH
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt, WebhookReplay

EventStatus = Literal["pending", "processed", "ignored", "unmatched", "failed", "rejected"]


class WebhookEventOut(BaseModel):
    id: str
    gateway_id: str
    provider: str
    provider_event_id: str | None
    event_type: str | None
    status: EventStatus = Field(
        description="pending (to process or retry), processed, ignored (nothing to do), "
        "unmatched (about an object paygate does not know), failed (after its retries), "
        "rejected (verification failed)"
    )
    verified: bool
    verification: str = Field(description="Why verification failed, or what verified it")
    received_at: datetime
    occurred_at: datetime | None
    attempts: int
    next_attempt_at: datetime | None
    processed_at: datetime | None
    outcome: str | None
    last_error: str | None
    payment_id: str | None
    refund_id: str | None

    @classmethod
    def of(cls, event: WebhookEvent) -> WebhookEventOut:
        return cls.model_validate(event, from_attributes=True)


class WebhookEventAttemptOut(BaseModel):
    number: int
    trigger: str = Field(description="received, retry, replay or bulk_replay")
    actor: str | None
    started_at: datetime
    finished_at: datetime | None
    result: str
    detail: str | None

    @classmethod
    def of(cls, attempt: WebhookEventAttempt) -> WebhookEventAttemptOut:
        return cls.model_validate(attempt, from_attributes=True)


class WebhookEventDetail(WebhookEventOut):
    headers: dict[str, str] = Field(description="As received, credentials redacted")
    body: str = Field(description="The raw body as text (undecodable bytes replaced)")
    history: list[WebhookEventAttemptOut]


class WebhookEventPage(BaseModel):
    data: list[WebhookEventOut]
    has_more: bool
    next_cursor: str | None


GatewayId = Annotated[str, StringConstraints(min_length=1, max_length=ID_MAX_LENGTH)]


class BulkReplayCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    received_from: AwareDatetime
    received_to: AwareDatetime
    gateway_id: GatewayId | None = None


class BulkReplayOut(BaseModel):
    id: str
    status: str = Field(description="running, finished or failed")
    gateway_id: str | None
    received_from: datetime
    received_to: datetime
    total: int
    done: int
    failed: int = Field(description="Replayed and still failing")
    started_by: str | None
    started_at: datetime
    finished_at: datetime | None
    detail: str | None

    @classmethod
    def of(cls, run: WebhookReplay) -> BulkReplayOut:
        return cls.model_validate(run, from_attributes=True)


class WebhookSetupOut(BaseModel):
    gateway_id: str
    url: str = Field(description="Where the provider must send this gateway's webhooks")
    events: list[str]
    steps: list[str]
    notes: list[str]
    secret_field: str
    configured: bool = Field(description="Whether the verification setting is filled in")
    can_register: bool = Field(description="Whether paygate can create the endpoint itself")


class WebhookRegistrationOut(BaseModel):
    gateway_id: str
    url: str
    endpoint_id: str = Field(description="The provider's id of the endpoint it created")
    events: list[str]
    stored: list[str] = Field(description="The gateway settings updated (values never shown)")
