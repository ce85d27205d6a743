"""Gateway health: each gateway's monitor, its check results (raw, then per hour), incidents,
the alert outbox and who receives alerts."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Identity,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp
from paygate.payments.models import GatewayCall, PaymentAttempt, Refund


def _gateway() -> ForeignKey:
    """A gateway deleted for good takes its monitoring rows along (an archived one keeps them)."""
    return ForeignKey("gateways.id", ondelete="CASCADE")


class GatewayMonitor(Base):
    """One per gateway: its schedule, its check and passive state, and the derived status.

    `next_check_at` is the next slot of the gateway's schedule; a round claims a due row by
    setting `claimed_until` (a lease) and `claim_token`, and only the holder of the token
    records the result and moves `next_check_at` on. A worker that dies mid-check leaves
    the slot due: once the lease runs out, the next round checks it.
    """

    __tablename__ = "gateway_monitors"
    __table_args__ = (Index("ix_gateway_monitors_next_check_at", "next_check_at"),)

    gateway_id: Mapped[str] = mapped_column(String(40), _gateway(), primary_key=True)
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    interval_minutes: Mapped[int] = mapped_column(Integer)
    failure_threshold: Mapped[int] = mapped_column(Integer)

    # up | degraded | down | paused | unknown (see monitoring/status.py), and since when.
    status: Mapped[str] = mapped_column(String(10))
    status_since: Mapped[Timestamp]
    # What the scheduled checks say: unknown | up | pending (failing, under the threshold) | down.
    check_state: Mapped[str] = mapped_column(String(10))
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    # The first failed check of the current streak: where an outage's duration starts.
    failing_since: Mapped[Timestamp | None]
    # What live traffic says: degraded when its technical failure rate is over the threshold.
    passive_degraded: Mapped[bool] = mapped_column(Boolean, default=False)
    passive_reason: Mapped[str | None] = mapped_column(Text)

    next_check_at: Mapped[Timestamp]
    claimed_until: Mapped[Timestamp | None]
    claim_token: Mapped[str | None] = mapped_column(String(32))

    last_check_at: Mapped[Timestamp | None]
    last_ok: Mapped[bool | None]
    last_latency_ms: Mapped[int | None]
    last_error_code: Mapped[str | None] = mapped_column(String(40))
    last_message: Mapped[str | None] = mapped_column(Text)

    # A custom gateway's TLS certificate, read once a day.
    tls_checked_at: Mapped[Timestamp | None]
    tls_expires_at: Mapped[Timestamp | None]
    tls_error: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class HealthCheck(Base):
    """One scheduled check's result (kept raw for `monitoring_raw_retention_days`)."""

    __tablename__ = "health_checks"
    __table_args__ = (
        Index("ix_health_checks_gateway_checked", "gateway_id", "checked_at"),
        # The rollup moves everything older than the retention out by time.
        Index("ix_health_checks_checked_at", "checked_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    gateway_id: Mapped[str] = mapped_column(String(40), _gateway())
    company_id: Mapped[str] = mapped_column(String(40))
    checked_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ok: Mapped[bool] = mapped_column(Boolean)
    latency_ms: Mapped[int] = mapped_column(Integer)
    # The check state this result led to (up, pending, down): the heartbeat bar's colour.
    state: Mapped[str] = mapped_column(String(10))
    error_code: Mapped[str | None] = mapped_column(String(40))
    message: Mapped[str | None] = mapped_column(Text)


class HealthCheckHour(Base):
    """The checks of one gateway in one hour, once the raw rows are past their retention."""

    __tablename__ = "health_check_hours"

    gateway_id: Mapped[str] = mapped_column(String(40), _gateway(), primary_key=True)
    hour: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    company_id: Mapped[str] = mapped_column(String(40))
    checks: Mapped[int] = mapped_column(Integer)
    failures: Mapped[int] = mapped_column(Integer)
    latency_p50: Mapped[float | None] = mapped_column(Float)
    latency_p95: Mapped[float | None] = mapped_column(Float)
    latency_max: Mapped[int | None] = mapped_column(Integer)


class Incident(Base):
    """A stretch of trouble of one gateway: an outage (checks say down) or a degradation
    (live traffic failing). At most one of each kind is open per gateway."""

    __tablename__ = "incidents"
    __table_args__ = (
        Index(
            "uq_incidents_one_open",
            "gateway_id",
            "kind",
            unique=True,
            postgresql_where=text("ended_at IS NULL"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    gateway_id: Mapped[str] = mapped_column(String(40), _gateway())
    kind: Mapped[str] = mapped_column(String(20))  # outage | degradation
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    ended_at: Mapped[Timestamp | None]
    cause: Mapped[str] = mapped_column(Text)
    last_message: Mapped[str | None] = mapped_column(Text)
    failed_checks: Mapped[int] = mapped_column(Integer, default=0)
    failed_calls: Mapped[int] = mapped_column(Integer, default=0)
    # The first failed checks and calls (at most EVIDENCE_LIMIT): what went wrong, no secret.
    evidence: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, default=list)
    # How it ended: recovered | paused.
    resolution: Mapped[str | None] = mapped_column(String(20))


class Alert(Base):
    """An alert to mail: written in the transaction that decided it, sent by a job.

    `dedup_key` is unique, so however many workers see the same change, an incident gets
    one down alert and one recovery notice (and a certificate one expiry warning).
    """

    __tablename__ = "alerts"
    __table_args__ = (
        UniqueConstraint("dedup_key"),
        Index(
            "ix_alerts_unsent",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    gateway_id: Mapped[str | None] = mapped_column(String(40), _gateway())
    incident_id: Mapped[str | None] = mapped_column(ForeignKey("incidents.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))
    dedup_key: Mapped[str] = mapped_column(String(120))
    subject: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    sent_at: Mapped[Timestamp | None]
    recipients: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)


class AlertRecipient(Base):
    """Who is mailed which kinds of alerts, per company."""

    __tablename__ = "alert_recipients"
    __table_args__ = (UniqueConstraint("company_id", "email"),)

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    email: Mapped[str] = mapped_column(String(254))
    kinds: Mapped[list[str]] = mapped_column(ARRAY(String(20)))
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


# Indexes on tables the payment path writes, for what monitoring reads from them: passive
# health scans the last minutes of calls and attempts, the dashboard a gateway's hours, and
# the failure log a company's failures newest first. Declared here, beside their readers.
Index("ix_gateway_calls_created_at", GatewayCall.created_at)
Index("ix_gateway_calls_gateway_created", GatewayCall.gateway_id, GatewayCall.created_at)
Index("ix_payment_attempts_created_at", PaymentAttempt.created_at)
Index(
    "ix_payment_attempts_failures",
    PaymentAttempt.company_id,
    PaymentAttempt.created_at,
    postgresql_where=PaymentAttempt.failure_kind.is_not(None),
)
Index(
    "ix_refunds_failures",
    Refund.company_id,
    Refund.created_at,
    postgresql_where=Refund.failure_kind.is_not(None),
)
