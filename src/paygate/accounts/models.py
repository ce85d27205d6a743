"""Users, companies, memberships, invitations, sign-in sessions and API keys."""

from __future__ import annotations

from sqlalchemy import ARRAY, ForeignKey, Integer, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId, Timestamp


class Company(Base):
    __tablename__ = "companies"

    id: Mapped[PublicId]
    name: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[CreatedAt]
    # Origins allowed to embed the company's payment pages in a frame (CSP frame-ancestors);
    # null: none, the page refuses to be framed.
    embed_origins: Mapped[list[str] | None] = mapped_column(ARRAY(String(200)))


class User(Base):
    __tablename__ = "users"

    id: Mapped[PublicId]
    # Stored lower-cased: one account per address, whatever the case typed.
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    last_sign_in_at: Mapped[Timestamp | None]
    # Failed sign-ins since the last success (or the last lock); at the threshold the
    # account locks until locked_until, or until an owner unlocks it.
    failed_sign_ins: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    locked_until: Mapped[Timestamp | None]


class Membership(Base):
    __tablename__ = "memberships"
    __table_args__ = (UniqueConstraint("company_id", "user_id"),)

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(20))
    created_at: Mapped[CreatedAt]


class Invitation(Base):
    __tablename__ = "invitations"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    email: Mapped[str] = mapped_column(String(320))
    role: Mapped[str] = mapped_column(String(20))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    # None when an API key sent it (the audit log names the key).
    invited_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    accepted_at: Mapped[Timestamp | None]
    revoked_at: Mapped[Timestamp | None]


class AuthSession(Base):
    """One sign-in: the family of refresh tokens that rotate from it."""

    __tablename__ = "auth_sessions"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[CreatedAt]
    last_used_at: Mapped[Timestamp | None]
    expires_at: Mapped[Timestamp]
    revoked_at: Mapped[Timestamp | None]
    revoked_reason: Mapped[str | None] = mapped_column(String(40))
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(400))


class RefreshToken(Base):
    __tablename__ = "refresh_tokens"

    id: Mapped[PublicId]
    session_id: Mapped[str] = mapped_column(ForeignKey("auth_sessions.id"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    used_at: Mapped[Timestamp | None]


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(20))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    scopes: Mapped[list[str]] = mapped_column(ARRAY(String(40)))
    created_by: Mapped[str | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[CreatedAt]
    last_used_at: Mapped[Timestamp | None]
    expires_at: Mapped[Timestamp | None]
    revoked_at: Mapped[Timestamp | None]
    # Rotation links the key that replaced this one (which works on only until its
    # shortened expires_at, the grace period) and the key a replacement was rotated from.
    rotated_from: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    replaced_by: Mapped[str | None] = mapped_column(ForeignKey("api_keys.id"))
    # When the owners were told the key expires soon: set once, so the notice goes once.
    expiry_notice_sent_at: Mapped[Timestamp | None]


class PasswordReset(Base):
    """One emailed reset link. Only the digest of its token is kept: the link is a credential."""

    __tablename__ = "password_resets"

    id: Mapped[PublicId]
    user_id: Mapped[str] = mapped_column(ForeignKey("users.id"), index=True)
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[CreatedAt]
    expires_at: Mapped[Timestamp]
    used_at: Mapped[Timestamp | None]
    # Set when a newer request (or a completed reset) makes this link void.
    revoked_at: Mapped[Timestamp | None]
    requested_ip: Mapped[str | None] = mapped_column(String(64))
