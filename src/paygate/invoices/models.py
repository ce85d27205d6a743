"""Invoices and their lines. Amounts are integers in the currency's minor unit."""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class Invoice(Base):
    __tablename__ = "invoices"
    __table_args__ = (
        UniqueConstraint("company_id", "number"),
        CheckConstraint("amount_reserved >= 0", name="amount_reserved_not_negative"),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    number: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), index=True)
    customer_name: Mapped[str] = mapped_column(String(200))
    customer_email: Mapped[str] = mapped_column(String(320), index=True)
    # ISO 3166-1 alpha-2, when known: routing rules may match on it.
    customer_country: Mapped[str | None] = mapped_column(String(2))
    # The company's own string keys and values (routing rules may match on them).
    # ("metadata" is taken by SQLAlchemy's declarative base, hence the attribute name.)
    meta: Mapped[dict[str, Any]] = mapped_column(
        "metadata", JSONB, server_default=text("'{}'::jsonb"), default=dict
    )
    currency: Mapped[str] = mapped_column(String(3))
    amount_total: Mapped[int] = mapped_column(BigInteger)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # What open payments and payments in review hold of the amount due (kept by the settle
    # path under the invoice's row lock, so reserving is one statement).
    amount_reserved: Mapped[int] = mapped_column(BigInteger, server_default="0", default=0)
    due_date: Mapped[date | None] = mapped_column(Date)
    memo: Mapped[str | None] = mapped_column(Text)
    allow_partial_payments: Mapped[bool] = mapped_column(Boolean, default=False)
    # The unguessable part of the public payment link (/pay/{token}); a capability, not a login.
    pay_token: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
    voided_at: Mapped[Timestamp | None]
    paid_at: Mapped[Timestamp | None]

    lines: Mapped[list[InvoiceLine]] = relationship(
        order_by="InvoiceLine.position", lazy="selectin", cascade="all, delete-orphan"
    )

    @property
    def amount_due(self) -> int:
        return max(self.amount_total - self.amount_paid, 0)


class InvoiceLine(Base):
    __tablename__ = "invoice_lines"

    id: Mapped[PublicId]
    invoice_id: Mapped[str] = mapped_column(ForeignKey("invoices.id"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(500))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
