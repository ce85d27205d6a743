"""Payments, their attempts at gateways, state changes, refunds, idempotency keys, gateway calls."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class Payment(Base):
    __tablename__ = "payments"
    __table_args__ = (
        Index("ix_payments_status_updated", "status", "updated_at"),
        # A gateway's webhook names the payment by the gateway's id (find_payment).
        Index(
            "ix_payments_gateway_reference",
            "gateway_reference",
            postgresql_where=text("gateway_reference IS NOT NULL"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    flow: Mapped[str] = mapped_column(String(10))
    payment_method_type: Mapped[str] = mapped_column(String(30))
    # Kept to re-ask the gateway by idempotency key after a timeout (a token, never a PAN;
    # the sandbox's test card numbers are public).
    payment_method: Mapped[str | None] = mapped_column(String(200))
    gateway_reference: Mapped[str | None] = mapped_column(String(200))
    # A cleared action is SQL NULL, not JSON null, like every other empty column.
    next_action: Mapped[dict[str, Any] | None] = mapped_column(JSONB(none_as_null=True))
    return_url: Mapped[str | None] = mapped_column(String(2048))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(Text)
    gateway_code: Mapped[str | None] = mapped_column(String(100))
    review_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class PaymentAttempt(Base):
    """One try at one gateway; its id is the idempotency key the gateway sees."""

    __tablename__ = "payment_attempts"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    gateway_id: Mapped[str] = mapped_column(ForeignKey("gateways.id"))
    status: Mapped[str] = mapped_column(String(20))
    gateway_reference: Mapped[str | None] = mapped_column(String(200))
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(Text)
    gateway_code: Mapped[str | None] = mapped_column(String(100))
    # "decline" (the customer's card or account) or "technical" (the gateway or the network).
    failure_kind: Mapped[str | None] = mapped_column(String(20))
    latency_ms: Mapped[float | None] = mapped_column()
    created_at: Mapped[CreatedAt]
    finished_at: Mapped[Timestamp | None]


class PaymentEvent(Base):
    """Every state change of a payment, with its cause: the payment's history."""

    __tablename__ = "payment_events"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(20))
    to_status: Mapped[str] = mapped_column(String(20))
    cause: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[CreatedAt]


class Refund(Base):
    __tablename__ = "refunds"
    # The sweeper looks for refunds left pending.
    __table_args__ = (Index("ix_refunds_status_updated", "status", "updated_at"),)

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    payment_id: Mapped[str] = mapped_column(ForeignKey("payments.id"), index=True)
    status: Mapped[str] = mapped_column(String(20))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(500))
    gateway_reference: Mapped[str | None] = mapped_column(String(200))
    failure_code: Mapped[str | None] = mapped_column(String(40))
    failure_message: Mapped[str | None] = mapped_column(Text)
    gateway_code: Mapped[str | None] = mapped_column(String(100))
    failure_kind: Mapped[str | None] = mapped_column(String(20))  # as PaymentAttempt's
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]


class IdempotencyKey(Base):
    """A client's Idempotency-Key: the first request's answer, replayed to every retry."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("company_id", "key"),
        Index("ix_idempotency_keys_expires_at", "expires_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    company_id: Mapped[str] = mapped_column(String(40))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[Timestamp | None]
    # Kept at least 24 hours, then purged.
    expires_at: Mapped[Timestamp]


class GatewayCall(Base):
    """One call to a gateway, redacted, linked to what it was for."""

    __tablename__ = "gateway_calls"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    gateway_id: Mapped[str] = mapped_column(String(40), index=True)
    payment_id: Mapped[str | None] = mapped_column(String(40), index=True)
    refund_id: Mapped[str | None] = mapped_column(String(40))
    operation: Mapped[str] = mapped_column(String(40))
    outcome: Mapped[str] = mapped_column(String(20))
    http_status: Mapped[int | None] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column()
    request: Mapped[dict[str, Any]] = mapped_column(JSONB)
    response: Mapped[dict[str, Any]] = mapped_column(JSONB)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
