"""Received gateway webhooks, their processing history, and bulk replay runs."""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class WebhookEvent(Base):
    """One request a gateway sent to `/webhooks/{gateway_id}`, stored before anything else.

    A verified event is unique per gateway and provider event id (the partial unique index):
    a retry or a concurrent duplicate is stored once, so it is processed once. A rejected
    request is stored too (with the reason) but never takes the id: a forged request
    naming a real event id must not keep the real one out.
    """

    __tablename__ = "webhook_events"
    __table_args__ = (
        Index(
            "uq_webhook_events_gateway_provider_event",
            "gateway_id",
            "provider_event_id",
            unique=True,
            postgresql_where=text("verified"),
        ),
        # The event log: newest first per company, filtered by gateway, status, type.
        Index("ix_webhook_events_company_received", "company_id", "received_at"),
        Index("ix_webhook_events_company_gateway", "company_id", "gateway_id"),
        # The received events' job: events stored and not yet attempted, oldest first.
        Index(
            "ix_webhook_events_received",
            "received_at",
            postgresql_where=text("status = 'pending' AND attempts = 0 AND verified"),
        ),
        # The sweeper: events due for (another) processing attempt.
        Index(
            "ix_webhook_events_due",
            "next_attempt_at",
            postgresql_where=text("next_attempt_at IS NOT NULL"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id", ondelete="CASCADE"))
    provider: Mapped[str] = mapped_column(String(20))
    provider_event_id: Mapped[str | None] = mapped_column(String(255))
    event_type: Mapped[str | None] = mapped_column(String(100))
    # The provider's own time for the event (when it says), for ordering and display.
    occurred_at: Mapped[Timestamp | None]
    received_at: Mapped[CreatedAt]

    # The request as it came: the raw bytes (signatures are over them) and the headers
    # with credentials redacted (signature headers are kept: a replay re-verifies them).
    body: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSONB)

    verified: Mapped[bool] = mapped_column(Boolean)
    # Why verification failed; or, when verified, which secret matched ("previous" during
    # a rotation's grace).
    verification: Mapped[str] = mapped_column(Text)

    # pending -> processed | ignored | unmatched | failed; rejected never moves.
    status: Mapped[str] = mapped_column(String(20))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    # When the sweeper should try (again): set on receipt (in case the job is lost) and
    # after a failed attempt (backoff); None once the event needs nothing more.
    next_attempt_at: Mapped[Timestamp | None]
    processed_at: Mapped[Timestamp | None]
    # What processing did, in plain words; the last error while failing.
    outcome: Mapped[str | None] = mapped_column(Text)
    last_error: Mapped[str | None] = mapped_column(Text)
    # The objects the event was about (when paygate knows them).
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    refund_id: Mapped[str | None] = mapped_column(String(40))


class WebhookEventAttempt(Base):
    """One processing run of an event: its history, shown with the event."""

    __tablename__ = "webhook_event_attempts"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    event_id: Mapped[str] = mapped_column(
        ForeignKey("webhook_events.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int] = mapped_column(Integer)
    # received (the job the receipt deferred), retry (the sweeper), replay, bulk_replay
    trigger: Mapped[str] = mapped_column(String(20))
    actor: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[Timestamp | None]
    # processed, ignored, unmatched, error, rejected (a replay whose re-verification failed)
    result: Mapped[str] = mapped_column(String(20))
    detail: Mapped[str | None] = mapped_column(Text)


class WebhookReplay(Base):
    """A bulk replay of a company's failed events received in a time range."""

    __tablename__ = "webhook_replays"
    __table_args__ = (
        # One running bulk replay per company at a time.
        Index(
            "uq_webhook_replays_running",
            "company_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    gateway_id: Mapped[str | None] = mapped_column(String(40))
    received_from: Mapped[Timestamp]
    received_to: Mapped[Timestamp]
    status: Mapped[str] = mapped_column(String(20))  # running, finished, failed
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    # Replayed, and still not processed (failed again).
    failed: Mapped[int] = mapped_column(Integer, default=0)
    started_by_type: Mapped[str] = mapped_column(String(20))
    started_by_id: Mapped[str | None] = mapped_column(String(40))
    started_by: Mapped[str | None] = mapped_column(String(320))
    started_at: Mapped[CreatedAt]
    progressed_at: Mapped[Timestamp]
    finished_at: Mapped[Timestamp | None]
    detail: Mapped[str | None] = mapped_column(Text)
    # The last event replayed (ids sort by time): a restarted job carries on after it.
    cursor: Mapped[str | None] = mapped_column(String(40))
