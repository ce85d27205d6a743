"""Webhook endpoints, the messages sent to them, each delivery and each attempt."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class WebhookEndpoint(Base):
    """Where a company wants its events, and the secret the deliveries are signed with."""

    __tablename__ = "webhook_endpoints"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    url: Mapped[str] = mapped_column(String(2048))
    description: Mapped[str | None] = mapped_column(String(200))
    event_types: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # "failing" when paygate turned it off after a whole retry schedule failed; "manual".
    disabled_reason: Mapped[str | None] = mapped_column(String(20))
    disabled_at: Mapped[Timestamp | None]
    # Since when every attempt failed (None after any success): decides the disabling.
    failing_since: Mapped[Timestamp | None]

    # The signing secret (and the replaced one during a rotation window), envelope-encrypted
    # like gateway credentials (security/crypto.py).
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # {"masked": "whsec_...abcd", "changed_at": iso, "previous_valid_until": iso (optional)}
    secret_hint: Mapped[dict[str, str]] = mapped_column(JSONB)
    # When the replaced secret stops being used: the sweeper wipes it from the envelope.
    previous_secret_expires_at: Mapped[Timestamp | None] = mapped_column(index=True)

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]

    def aad(self) -> str:
        """Associated data binding the ciphertext to this company and endpoint."""
        return f"paygate/webhook-endpoint/{self.company_id}/{self.id}"


class WebhookMessage(Base):
    """One event as sent: its body is serialized once, so every attempt signs the same bytes.

    Its id is the `webhook-id` header, the same for every endpoint and every attempt: the
    receiver's idempotency key.
    """

    __tablename__ = "webhook_messages"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    event_type: Mapped[str] = mapped_column(String(40))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]


class WebhookDelivery(Base):
    """One message to one endpoint: pending until an attempt succeeds or the schedule ends."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        # The sweeper's question: which pending deliveries are overdue?
        Index(
            "ix_webhook_deliveries_due",
            "next_attempt_at",
            postgresql_where=text("status = 'pending'"),
        ),
        # An endpoint's delivery log, newest first.
        Index("ix_webhook_deliveries_endpoint_id_id", "endpoint_id", "id"),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    endpoint_id: Mapped[str] = mapped_column(ForeignKey("webhook_endpoints.id", ondelete="CASCADE"))
    message_id: Mapped[str] = mapped_column(ForeignKey("webhook_messages.id"), index=True)
    event_type: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(20))  # pending, succeeded, failed
    # What the next attempt is: "scheduled" (the retry schedule) or "manual" (a redelivery
    # asked for after the delivery ended: one attempt, no schedule after it).
    trigger: Mapped[str] = mapped_column(String(10), default="scheduled")
    attempt_count: Mapped[int] = mapped_column(Integer, default=0)
    first_attempt_at: Mapped[Timestamp | None]
    last_attempt_at: Mapped[Timestamp | None]
    # Pending: when the next attempt is due (while one is in flight, when its claim lapses).
    next_attempt_at: Mapped[Timestamp | None]
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[Timestamp | None]


class WebhookAttempt(Base):
    """One HTTP request of a delivery: what the endpoint answered, and what came next."""

    __tablename__ = "webhook_attempts"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    delivery_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_deliveries.id", ondelete="CASCADE"), index=True
    )
    attempt_number: Mapped[int] = mapped_column(Integer)
    trigger: Mapped[str] = mapped_column(String(10))
    url: Mapped[str] = mapped_column(String(2048))
    started_at: Mapped[Timestamp]
    latency_ms: Mapped[float | None] = mapped_column()
    status_code: Mapped[int | None] = mapped_column(Integer)
    # The first 2 KB of the answer, as text.
    response_body: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(String(500))
    succeeded: Mapped[bool] = mapped_column(Boolean)
    # When the attempt after this one was scheduled (None: none, the delivery ended).
    next_attempt_at: Mapped[Timestamp | None]
