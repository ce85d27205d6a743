"""A company's configured payment gateways."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class Gateway(Base):
    __tablename__ = "gateways"
    __table_args__ = (Index("ix_gateways_company_live", "company_id", "archived_at"),)

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    # The team's name for it: never shown to customers.
    name: Mapped[str] = mapped_column(String(100))
    # What customers see on the payment page; unset: the method and the provider's name.
    public_label: Mapped[str | None] = mapped_column(String(60))
    gateway_type: Mapped[str] = mapped_column(String(20))
    environment: Mapped[str] = mapped_column(String(10))
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)

    # Non-secret settings in clear (publishable key, location id, base URL).
    public_config: Mapped[dict[str, str]] = mapped_column(JSONB, default=dict)
    # Per secret field: its mask ("sk_test_...4242") and when it last changed.
    secret_hints: Mapped[dict[str, dict[str, str]]] = mapped_column(JSONB, default=dict)
    # Envelope-encrypted secret fields (see security/crypto.py); a replaced secret stays in
    # the same envelope as "previous" until its grace ends (see gateways/credentials.py).
    key_id: Mapped[str] = mapped_column(String(64), index=True)
    wrapped_data_key: Mapped[bytes] = mapped_column(LargeBinary)
    secret_ciphertext: Mapped[bytes] = mapped_column(LargeBinary)
    # The earliest end of grace among the previous secrets kept: when the sweeper wipes one.
    previous_credentials_expire_at: Mapped[Timestamp | None] = mapped_column(index=True)

    supported_currencies: Mapped[list[str]] = mapped_column(ARRAY(String(3)), default=list)
    min_amount: Mapped[int | None] = mapped_column(BigInteger)
    max_amount: Mapped[int | None] = mapped_column(BigInteger)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    payment_method_types: Mapped[list[str]] = mapped_column(ARRAY(String(30)), default=list)

    last_test_at: Mapped[Timestamp | None]
    last_test_ok: Mapped[bool | None]
    last_test_latency_ms: Mapped[int | None]
    last_test_message: Mapped[str | None] = mapped_column(Text)

    created_at: Mapped[CreatedAt]
    updated_at: Mapped[CreatedAt]
    archived_at: Mapped[Timestamp | None]

    def aad(self) -> str:
        """Associated data binding the ciphertext to this company and configuration."""
        return f"paygate/gateway/{self.company_id}/{self.id}"

    def settings(self) -> dict[str, Any]:
        """The non-secret settings: what a version of the configuration puts back."""
        return {
            "name": self.name,
            "public_label": self.public_label,
            "environment": self.environment,
            "enabled": self.enabled,
            "configuration": dict(self.public_config),
            "supported_currencies": list(self.supported_currencies),
            "min_amount": self.min_amount,
            "max_amount": self.max_amount,
            "priority": self.priority,
            "payment_method_types": list(self.payment_method_types),
        }

    def snapshot(self) -> dict[str, Any]:
        """What the audit log compares before and after a change (secrets as masks)."""
        return {
            **self.settings(),
            "configuration": {
                **self.public_config,
                # A secret is compared by when it changed, never by its value.
                **{name: hint["changed_at"] for name, hint in self.secret_hints.items()},
            },
            # Until when a replaced secret is still accepted (a time, never the value).
            "previous_credentials": {
                name: hint["previous_valid_until"]
                for name, hint in self.secret_hints.items()
                if hint.get("previous_valid_until")
            },
        }

    def version_snapshot(self) -> dict[str, Any]:
        """A version in the configuration history (security/history.py): the settings, and
        each secret as its mask and when it changed, never its value. A replaced secret's
        grace is left out: its ending (the sweeper's wipe) is no new version."""
        return {
            **self.settings(),
            "credentials": {
                name: {"masked": hint["masked"], "changed_at": hint["changed_at"]}
                for name, hint in (self.secret_hints or {}).items()
            },
            "archived": self.archived_at is not None,
        }
