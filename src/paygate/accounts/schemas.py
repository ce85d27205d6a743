"""API shapes for sign-up, sign-in, members and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)

from paygate.accounts.permissions import Permission, Role
from paygate.settings import normalize_origin

Email = Annotated[EmailStr, StringConstraints(max_length=320)]
# Bounded well above the 128-character rule so the refusal can say why.
Password = Annotated[str, StringConstraints(min_length=1, max_length=1024)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
# API key names are stored in String(100): a longer one was a database error (500).
KeyName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RegisterRequest(Strict):
    email: Email
    password: Password
    company_name: Name


class LoginRequest(Strict):
    email: Email
    password: Password
    company_id: str | None = Field(
        default=None,
        max_length=40,
        description="Which company to sign in to, for members of several",
    )


class RefreshRequest(Strict):
    refresh_token: str = Field(min_length=1, max_length=200)


class TokenPair(BaseModel):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int


class UserOut(BaseModel):
    id: str
    email: str


class CompanyOut(BaseModel):
    id: str
    name: str


class MembershipSummary(BaseModel):
    company_id: str
    company_name: str
    role: Role


class MeOut(BaseModel):
    actor_type: str
    user: UserOut | None
    company: CompanyOut
    role: Role | None
    permissions: list[Permission]
    memberships: list[MembershipSummary]


class MemberOut(BaseModel):
    id: str
    user_id: str
    email: str
    role: Role
    created_at: datetime
    # Set while the member is locked out after too many failed sign-ins.
    locked_until: datetime | None = None


class InvitationOut(BaseModel):
    id: str
    email: str
    role: Role
    created_at: datetime
    expires_at: datetime
    invite_url: str | None = Field(
        default=None, description="Returned once, when the invitation is created"
    )


class MembersOut(BaseModel):
    members: list[MemberOut]
    invitations: list[InvitationOut]


class InviteRequest(Strict):
    email: Email
    role: Role


class RoleChange(Strict):
    role: Role


class AcceptInvitation(Strict):
    token: str = Field(min_length=1, max_length=200)
    password: Password


MAX_API_KEY_LIFETIME_DAYS = 730  # two years: PCI DSS 3.6/8.6 want keys changed periodically
MAX_ROTATION_GRACE_HOURS = 168  # a week to roll the new key out everywhere


class ApiKeyCreate(Strict):
    name: KeyName
    scopes: list[Permission] = Field(min_length=1, max_length=len(Permission))
    expires_at: datetime | None = Field(
        default=None, description="When the key stops working (at most two years ahead)"
    )
    expires_in_days: int | None = Field(
        default=None,
        ge=1,
        le=MAX_API_KEY_LIFETIME_DAYS,
        description="Instead of expires_at: the key's lifetime in days",
    )

    @model_validator(mode="after")
    def one_expiry(self) -> ApiKeyCreate:
        if self.expires_at is not None and self.expires_in_days is not None:
            raise ValueError("give expires_at or expires_in_days, not both")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            raise ValueError("expires_at needs a time zone (e.g. 2027-01-31T00:00:00Z)")
        return self


class ApiKeyRotate(Strict):
    grace_period_hours: int = Field(
        default=24,
        ge=0,
        le=MAX_ROTATION_GRACE_HOURS,
        description="How long the old key keeps working (0: it stops now; at most 7 days)",
    )


class ApiKeyOut(BaseModel):
    id: str
    name: str
    prefix: str
    scopes: list[Permission]
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime | None
    revoked_at: datetime | None
    rotated_from: str | None = None
    replaced_by: str | None = None


class ApiKeyCreated(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, store it safely")


class ApiKeyRotated(ApiKeyCreated):
    previous_key_expires_at: datetime = Field(
        description="When the key this one replaces stops working"
    )


MAX_EMBED_ORIGINS = 10


class EmbedOrigins(Strict):
    """Origins (https://host[:port]) allowed to embed the company's payment pages."""

    origins: list[Annotated[str, StringConstraints(max_length=200)]] = Field(
        max_length=MAX_EMBED_ORIGINS
    )

    @field_validator("origins")
    @classmethod
    def check_origins(cls, value: list[str]) -> list[str]:
        origins = [normalize_origin(origin) for origin in value]
        if any(not origin.startswith("https://") for origin in origins):
            raise ValueError("embedding origins must use https")
        return list(dict.fromkeys(origins))


class PasswordChange(Strict):
    current_password: Password
    new_password: Password


class PasswordResetRequest(Strict):
    email: Email


class PasswordResetConfirm(Strict):
    token: str = Field(min_length=1, max_length=200)
    new_password: Password


class Accepted(BaseModel):
    detail: str


class SessionOut(BaseModel):
    """One sign-in session (a browser or app signed in), never its tokens."""

    id: str
    created_at: datetime
    last_used_at: datetime | None
    expires_at: datetime
    ip: str | None
    user_agent: str | None
    current: bool


class SessionsEnded(BaseModel):
    ended: int
