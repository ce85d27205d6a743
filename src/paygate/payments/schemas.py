"""API shapes of payments, refunds and gateway calls."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    HttpUrl,
    StrictInt,
    StringConstraints,
    UrlConstraints,
)

from paygate.payments.state import PaymentStatus


class PaymentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gateway_id: Annotated[str, StringConstraints(max_length=40)] | None = Field(
        default=None, description="Leave out to let routing pick an eligible gateway"
    )
    payment_method: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="The gateway's own token (pm_..., a Square nonce, tok_..., a sandbox test "
        "card). Leave out for a hosted flow (redirect to the gateway's page).",
    )
    payment_method_type: Annotated[str, StringConstraints(max_length=30)] = "card"
    amount: Annotated[StrictInt, Field(gt=0, le=10**15)] | None = Field(
        default=None, description="Minor units; defaults to the invoice's amount due"
    )
    # The column is String(2048); HttpUrl alone allows 2083 characters.
    return_url: Annotated[HttpUrl, UrlConstraints(max_length=2048)] | None = Field(
        default=None, description="Where the customer goes after a redirect flow"
    )


class ReviewDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcome: Literal["succeeded", "failed"] = Field(
        description="succeeded only once the gateway's dashboard shows the full amount collected"
    )
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=1000)]


class RefundCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    amount: Annotated[StrictInt, Field(gt=0, le=10**15)] | None = Field(
        default=None, description="Minor units; defaults to everything not yet refunded"
    )
    reason: Annotated[str, StringConstraints(max_length=500)] | None = None


class Failure(BaseModel):
    code: str
    message: str
    gateway_code: str | None


class NextActionOut(BaseModel):
    type: str
    redirect_url: str | None = None
    client_secret: str | None = None
    publishable_key: str | None = None


class AttemptOut(BaseModel):
    id: str
    gateway_id: str
    status: str
    gateway_reference: str | None
    error_code: str | None
    error_message: str | None
    gateway_code: str | None = Field(description="The gateway's own code, kept for support")
    failure_kind: Literal["decline", "technical"] | None
    latency_ms: float | None = Field(description="Time spent in this attempt's gateway calls")
    created_at: datetime
    finished_at: datetime | None


class EventOut(BaseModel):
    from_status: str | None
    to_status: str
    cause: str
    occurred_at: datetime


class RefundOut(BaseModel):
    id: str
    payment_id: str
    status: str
    amount: int
    currency: str
    reason: str | None
    failure_message: str | None
    created_at: datetime


class PaymentOut(BaseModel):
    id: str
    invoice_id: str
    gateway_id: str
    status: PaymentStatus
    amount: int
    currency: str
    amount_refunded: int
    payment_method_type: str
    next_action: NextActionOut | None
    failure: Failure | None
    review_reason: str | None
    attempts: list[AttemptOut]
    events: list[EventOut]
    refunds: list[RefundOut]
    created_at: datetime
    updated_at: datetime


class PaymentPage(BaseModel):
    data: list[PaymentOut]
    has_more: bool
    next_cursor: str | None


class GatewayCallOut(BaseModel):
    id: str
    gateway_id: str
    payment_id: str | None
    refund_id: str | None
    operation: str
    outcome: str
    http_status: int | None
    latency_ms: float
    request: dict[str, Any]
    response: dict[str, Any]
    error: str | None
    created_at: datetime
