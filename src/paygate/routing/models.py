"""Routing rules, the company's routing configuration, retry policy and circuit breakers."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ARRAY, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp
from paygate.payments.models import PaymentAttempt


class RoutingConfig(Base):
    """A company's rule set head: its default list and the version the rules are at.

    Its row is locked by every change to the rules, so versions are numbered one by one.
    """

    __tablename__ = "routing_configs"

    company_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("companies.id"), primary_key=True
    )
    # Gateways tried, in this order, when no rule matches (empty: every eligible gateway by
    # its own priority, as before any routing was configured).
    default_gateway_ids: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    version: Mapped[int] = mapped_column(Integer, default=0)
    updated_at: Mapped[CreatedAt]


class RoutingRule(Base):
    __tablename__ = "routing_rules"
    __table_args__ = (Index("ix_routing_rules_company_position", "company_id", "position"),)

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(100))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    # See routing/schemas.py: Conditions and the action union.
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    action: Mapped[dict[str, Any]] = mapped_column(JSONB)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]

    def snapshot(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "enabled": self.enabled,
            "conditions": self.conditions,
            "action": self.action,
        }


class RetryPolicy(Base):
    """What happens after a failed attempt, per company (defaults apply without a row)."""

    __tablename__ = "retry_policies"

    company_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("companies.id"), primary_key=True
    )
    # Attempts per payment, across every gateway, the first included.
    max_attempts: Mapped[int] = mapped_column(Integer)
    # Soft decline codes tried again at the next gateway (hard declines never are).
    retry_decline_codes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    failover_customer_present: Mapped[bool] = mapped_column(Boolean)
    failover_api: Mapped[bool] = mapped_column(Boolean)
    # The circuit breaker: open after this many technical failures in a row, try again
    # (half-open) after the cool-down.
    breaker_failures: Mapped[int] = mapped_column(Integer)
    breaker_cooldown_seconds: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[CreatedAt]


class GatewayBreaker(Base):
    """The circuit breaker of one gateway, fed by live payment outcomes.

    No row (or closed with no failures) is the steady state: successes write nothing.
    """

    __tablename__ = "gateway_breakers"

    gateway_id: Mapped[str] = mapped_column(
        String(40), ForeignKey("gateways.id", ondelete="CASCADE"), primary_key=True
    )
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    state: Mapped[str] = mapped_column(String(10))  # closed, open, half_open
    consecutive_failures: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[Timestamp | None]
    # When the one trial payment of a half-open breaker was let through.
    probe_started_at: Mapped[Timestamp | None]
    last_failure: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[CreatedAt]


# Success-rate routing reads a gateway's newest finished attempts; this index serves it.
# Declared here, beside its only reader, so payments/models.py stays as it is.
Index(
    "ix_payment_attempts_gateway_created",
    PaymentAttempt.gateway_id,
    PaymentAttempt.created_at,
)
