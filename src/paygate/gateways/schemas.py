"""API shapes of gateway configurations and gateway types."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    StringConstraints,
)

from paygate.gateways.adapters.base import Environment, FieldKind, GatewayType
from paygate.security.history_schemas import RestoreOut, VersionOut

GatewayName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
PublicLabel = Annotated[StrictStr, StringConstraints(strip_whitespace=True, max_length=60)]
ConfigValue = Annotated[StrictStr, StringConstraints(max_length=2048)]
Amount = Annotated[StrictInt, Field(ge=0, le=10**15)]
CurrencyCode = Annotated[StrictStr, StringConstraints(min_length=3, max_length=3)]
MethodType = Annotated[StrictStr, StringConstraints(min_length=1, max_length=30)]


class GatewayFields(BaseModel):
    """What can be set on create and update (the type is fixed at creation)."""

    model_config = ConfigDict(extra="forbid")

    name: GatewayName | None = None
    public_label: PublicLabel | None = Field(
        default=None,
        description="What customers see on the payment page (null or empty: the method and "
        "the provider, e.g. 'Card via Stripe'); the name is shown to the team only",
    )
    environment: Environment | None = None
    enabled: StrictBool | None = None
    configuration: dict[Annotated[str, StringConstraints(max_length=64)], ConfigValue] | None = (
        Field(default=None, max_length=32)
    )
    supported_currencies: list[CurrencyCode] | None = Field(default=None, max_length=200)
    min_amount: Amount | None = None
    max_amount: Amount | None = None
    priority: Annotated[StrictInt, Field(ge=0, le=10_000)] | None = None
    payment_method_types: list[MethodType] | None = Field(default=None, max_length=20)


class GatewayCreate(GatewayFields):
    gateway_type: GatewayType


class GatewayUpdate(GatewayFields):
    """A secret field left out (or sent empty) keeps its stored value."""

    previous_secret_grace_hours: Annotated[StrictInt, Field(ge=0, le=168)] | None = Field(
        default=None,
        description=(
            "How long a replaced secret stays accepted (for webhooks already in flight), in "
            "hours, 0 to 168; 0 drops it at once (after a leak). Default: the "
            "credential_grace_hours setting (24)."
        ),
    )


class LastTest(BaseModel):
    at: datetime
    ok: bool
    latency_ms: int | None
    message: str | None


class CredentialOut(BaseModel):
    masked: str
    changed_at: datetime
    previous_valid_until: datetime | None = Field(
        description="While set, the replaced value is still accepted until this time"
    )


class GatewayOut(BaseModel):
    id: str
    name: str
    public_label: str | None
    gateway_type: GatewayType
    environment: Environment
    enabled: bool
    configuration: dict[str, str] = Field(description="Settings, with every secret masked")
    credentials: dict[str, CredentialOut] = Field(
        description="Each secret's mask, when it last changed, and its previous one's grace"
    )
    credentials_readable: bool = Field(
        description="False when the master keys cannot decrypt the secrets: re-enter them"
    )
    supported_currencies: list[str]
    min_amount: int | None
    max_amount: int | None
    priority: int
    payment_method_types: list[str]
    last_test: LastTest | None
    created_at: datetime
    updated_at: datetime


class GatewayRestored(GatewayOut, RestoreOut):
    """The gateway after a version's settings were put back; its credentials were kept."""


class CredentialVersionOut(BaseModel):
    masked: str
    changed_at: datetime


class GatewayVersionOut(VersionOut):
    """A gateway as it was after a change: its settings, each secret as its mask."""

    name: str
    public_label: str | None
    environment: Environment
    enabled: bool
    configuration: dict[str, str] = Field(description="Settings, with every secret masked")
    credentials: dict[str, CredentialVersionOut] = Field(
        description="Each secret's mask and when it had last changed; never a value, so a "
        "restore keeps the current credentials"
    )
    supported_currencies: list[str]
    min_amount: int | None
    max_amount: int | None
    priority: int
    payment_method_types: list[str]
    archived: bool


class GatewayDeleted(BaseModel):
    id: str
    outcome: Literal["deleted", "archived"]


class ConnectionTestOut(BaseModel):
    ok: bool
    message: str
    latency_ms: int
    tested_at: datetime


class FieldSpecOut(BaseModel):
    name: str
    label: str
    kind: FieldKind
    required: bool
    secret: bool
    help: str
    prefixes: dict[Environment, list[str]]
    pattern: str | None
    max_length: int
    choices: list[str]


class GatewayTypeOut(BaseModel):
    type: GatewayType
    display_name: str
    description: str
    payment_method_types: list[str]
    fields: list[FieldSpecOut]
    default_api_base_url: dict[Environment, str]
