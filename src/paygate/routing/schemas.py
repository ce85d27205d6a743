"""API shapes of routing rules, their versions, previews, simulations and the retry policy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StringConstraints

from paygate.security.history_schemas import VersionOut

GatewayId = Annotated[str, StringConstraints(min_length=1, max_length=40)]
CurrencyCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=3, max_length=3)
]
CountryCode = Annotated[
    str, StringConstraints(strip_whitespace=True, to_upper=True, min_length=2, max_length=2)
]
MethodType = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=30)]
MetadataKey = Annotated[str, StringConstraints(min_length=1, max_length=40)]
MetadataValue = Annotated[str, StringConstraints(max_length=500)]
Amount = Annotated[StrictInt, Field(ge=0, le=10**15)]
MAX_GATEWAYS = 20


class CardBrand(StrEnum):
    VISA = "visa"
    MASTERCARD = "mastercard"
    AMEX = "amex"
    DISCOVER = "discover"
    JCB = "jcb"
    DINERS = "diners"
    UNIONPAY = "unionpay"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Conditions(Strict):
    """Every condition given must hold; an empty list or absent value matches anything."""

    currencies: list[CurrencyCode] = Field(default_factory=list, max_length=50)
    amount_min: Amount | None = Field(
        default=None, description="Minor units of the payment's currency, inclusive"
    )
    amount_max: Amount | None = Field(
        default=None, description="Minor units of the payment's currency, inclusive"
    )
    payment_method_types: list[MethodType] = Field(default_factory=list, max_length=20)
    card_brands: list[CardBrand] = Field(
        default_factory=list,
        max_length=10,
        description="Matches only payments whose card brand is known (a sandbox test card "
        "number, a pm_card_<brand> token)",
    )
    customer_countries: list[CountryCode] = Field(default_factory=list, max_length=250)
    metadata: dict[MetadataKey, MetadataValue] = Field(
        default_factory=dict,
        max_length=10,
        description="The invoice's metadata must have each of these keys with this value",
    )


class PriorityAction(Strict):
    type: Literal["priority"]
    gateway_ids: list[GatewayId] = Field(min_length=1, max_length=MAX_GATEWAYS)


class SplitShare(Strict):
    gateway_id: GatewayId
    percent: Annotated[StrictInt, Field(ge=1, le=100)]


class SplitAction(Strict):
    """Each payment goes first to one gateway, drawn by a hash of the payment's id (so a
    retry of the same payment draws the same one); the others follow as fallbacks."""

    type: Literal["split"]
    split: list[SplitShare] = Field(min_length=2, max_length=MAX_GATEWAYS)


class SuccessRateAction(Strict):
    """The gateway with the best recent success rate first; `exploration_percent` of the
    payments try another one first, so a recovered gateway earns its rate back."""

    type: Literal["success_rate"]
    gateway_ids: list[GatewayId] = Field(min_length=2, max_length=MAX_GATEWAYS)
    exploration_percent: Annotated[StrictInt, Field(ge=0, le=50)] = 10
    window_minutes: Annotated[StrictInt, Field(ge=5, le=10_080)] = 60
    min_attempts: Annotated[StrictInt, Field(ge=1, le=1000)] = 20


Action = Annotated[PriorityAction | SplitAction | SuccessRateAction, Field(discriminator="type")]
RuleName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


class RuleCreate(Strict):
    name: RuleName
    enabled: StrictBool = True
    conditions: Conditions = Field(default_factory=Conditions)
    action: Action
    position: Annotated[StrictInt, Field(ge=1, le=1000)] | None = Field(
        default=None, description="1 is evaluated first; default: after the last rule"
    )


class RuleUpdate(Strict):
    name: RuleName | None = None
    enabled: StrictBool | None = None
    conditions: Conditions | None = None
    action: Action | None = None


class ProposedRule(Strict):
    """A rule of a proposed rule set (simulation): evaluated in the order given."""

    name: RuleName
    enabled: StrictBool = True
    conditions: Conditions = Field(default_factory=Conditions)
    action: Action


class RuleOut(BaseModel):
    id: str
    position: int
    name: str
    enabled: bool
    conditions: Conditions
    action: Action
    created_at: datetime
    updated_at: datetime


class RuleSetOut(BaseModel):
    version: int = Field(description="0 until the first change")
    default_gateway_ids: list[str]
    rules: list[RuleOut]


class DefaultListIn(Strict):
    gateway_ids: list[GatewayId] = Field(
        max_length=MAX_GATEWAYS,
        description="Tried in this order when no rule matches; empty: every eligible gateway "
        "by its own priority",
    )


class ReorderIn(Strict):
    rule_ids: list[GatewayId] = Field(
        max_length=1000, description="Every rule's id, in the new order"
    )


class SnapshotRule(BaseModel):
    id: str
    name: str
    enabled: bool
    conditions: Conditions
    action: Action


class VersionDetailOut(VersionOut):
    default_gateway_ids: list[str]
    rules: list[SnapshotRule]


class PreviewIn(Strict):
    amount: Annotated[StrictInt, Field(gt=0, le=10**15)]
    currency: CurrencyCode
    payment_method_type: MethodType = "card"
    card_brand: CardBrand | None = None
    customer_country: CountryCode | None = None
    metadata: dict[MetadataKey, MetadataValue] = Field(default_factory=dict, max_length=20)
    payment_id: GatewayId | None = Field(
        default=None,
        description="A split draws by the payment's id; leave out to draw for a new payment",
    )


class RoutedGatewayOut(BaseModel):
    gateway_id: str
    name: str
    note: str | None = Field(description="Why it is at this place, where it says more")


class SkippedGatewayOut(BaseModel):
    gateway_id: str
    name: str
    reason: str = Field(description="disabled, deleted, currency, amount, method, down")
    detail: str


class MatchedRuleOut(BaseModel):
    id: str
    name: str
    position: int


class DecisionOut(BaseModel):
    gateways: list[RoutedGatewayOut]
    skipped: list[SkippedGatewayOut]
    rule: MatchedRuleOut | None
    source: Literal["rule", "default", "all_eligible"]
    explanation: str


class SimulateIn(Strict):
    """A proposed rule set; leave both out to simulate the current one, or name a version."""

    rules: list[ProposedRule] | None = Field(default=None, max_length=200)
    default_gateway_ids: list[GatewayId] | None = Field(default=None, max_length=MAX_GATEWAYS)
    version: Annotated[StrictInt, Field(ge=1)] | None = None


class SimulatedGatewayOut(BaseModel):
    gateway_id: str
    name: str
    simulated: int = Field(description="Payments the proposed rules send here first")
    actual: int = Field(description="Payments that went here (their last attempt)")
    actual_succeeded: int


class SimulationOut(BaseModel):
    since: datetime
    until: datetime
    payments: int
    truncated: bool = Field(description="Only the newest payments were simulated")
    changed: int = Field(description="Payments whose first gateway would differ")
    unroutable: int = Field(description="Payments no gateway would take")
    gateways: list[SimulatedGatewayOut]


class RetryPolicyIn(Strict):
    max_attempts: Annotated[StrictInt, Field(ge=1, le=5)] = Field(
        description="Attempts per payment across every gateway, the first one included"
    )
    retry_decline_codes: list[Annotated[str, StringConstraints(max_length=40)]] = Field(
        max_length=20,
        description="Soft decline codes tried again at the next gateway; hard declines "
        "(stolen card, insufficient funds, invalid number, ...) never are",
    )
    failover_customer_present: StrictBool = Field(
        description="Fail over on the payment page after a technical failure"
    )
    failover_api: StrictBool = Field(
        description="Fail over server-to-server payments after a technical failure"
    )
    breaker_failures: Annotated[StrictInt, Field(ge=1, le=100)] = Field(
        description="Technical failures in a row that open a gateway's circuit breaker"
    )
    breaker_cooldown_seconds: Annotated[StrictInt, Field(ge=5, le=3600)] = Field(
        description="How long an open breaker waits before one trial payment (half-open)"
    )


class RetryPolicyOut(RetryPolicyIn):
    updated_at: datetime | None


class BreakerOut(BaseModel):
    gateway_id: str
    name: str
    state: Literal["closed", "open", "half_open"]
    consecutive_failures: int
    opened_at: datetime | None
    last_failure: str | None
