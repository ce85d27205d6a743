"""The audit log: append-only (a trigger refuses UPDATE and DELETE) and hash-chained.

Each company's entries form a chain: `seq` numbers them 1, 2, 3, ..., `prev_hash` is the
hash of the entry before, `hash` covers the entry's fields and `prev_hash`. PostgreSQL
sets all three when the transaction that wrote the entry commits (the deferred
`audit_entries_seal` trigger, migration 0004); until then they are null.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    DateTime,
    FetchedValue,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class AuditEntry(Base):
    __tablename__ = "audit_entries"
    __table_args__ = (
        Index("ix_audit_entries_company_object", "company_id", "object_type", "object_id"),
        Index("ix_audit_entries_company_actor", "company_id", "actor_id"),
        Index("ix_audit_entries_chain", "company_id", "seq", unique=True),
    )

    id: Mapped[PublicId]
    # Null for events that belong to no company (a failed sign-in with an unknown email).
    company_id: Mapped[str | None] = mapped_column(String(40), index=True)
    occurred_at: Mapped[CreatedAt]
    actor_type: Mapped[str] = mapped_column(String(20))  # user, api_key, system, anonymous
    actor_id: Mapped[str | None] = mapped_column(String(40))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(60))
    object_type: Mapped[str | None] = mapped_column(String(40))
    object_id: Mapped[str | None] = mapped_column(String(40))
    # The object's name when the entry was written: a deleted or renamed object reads by name.
    object_name: Mapped[str | None] = mapped_column(String(320))
    outcome: Mapped[str] = mapped_column(String(20))  # success, failure, denied
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))
    request_id: Mapped[str | None] = mapped_column(String(64))
    changes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    detail: Mapped[str | None] = mapped_column(Text)
    # Set by the database at commit; never by the writer.
    seq: Mapped[int | None] = mapped_column(BigInteger, server_default=FetchedValue())
    prev_hash: Mapped[bytes | None] = mapped_column(LargeBinary, server_default=FetchedValue())
    hash: Mapped[bytes | None] = mapped_column(LargeBinary, server_default=FetchedValue())


class KeyRotation(Base):
    """One run of re-wrapping a company's data keys under the primary master key.

    Written by the job as it goes, so the page and the API show its progress; the ids of
    configurations that could not be re-wrapped are kept (never any secret material).
    """

    __tablename__ = "key_rotations"
    __table_args__ = (
        # One run at a time per company.
        Index(
            "ux_key_rotations_running",
            "company_id",
            unique=True,
            postgresql_where=text("status = 'running'"),
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    started_by_type: Mapped[str] = mapped_column(String(20))  # user or api_key
    started_by_id: Mapped[str | None] = mapped_column(String(40))
    started_by: Mapped[str] = mapped_column(String(320))
    started_at: Mapped[CreatedAt]
    # Moved on by every batch: a running run that stops moving was abandoned by its worker.
    progressed_at: Mapped[CreatedAt]
    finished_at: Mapped[Timestamp | None]
    target_key_id: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20))  # running, finished, failed
    total: Mapped[int] = mapped_column(Integer)
    done: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    failed_gateway_ids: Mapped[list[str]] = mapped_column(ARRAY(String(40)), default=list)
    detail: Mapped[str | None] = mapped_column(Text)


class RevokedToken(Base):
    """One entry of the token revocation list (see security/revocation.py).

    `identifier` is an access token's jti (that token is signed out) or a sign-in session
    id (every token of that session). The row is needed only until the last access token
    it covers would have expired anyway; the purge job deletes it after `expires_at`.
    """

    __tablename__ = "revoked_tokens"

    identifier: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
