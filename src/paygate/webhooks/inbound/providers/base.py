"""What every provider module gives the inbound webhook code: how a webhook is verified,
what its events mean (as gateway-neutral notices), how paygate registers its URL with the
provider, and the setup steps the gateway card shows."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Protocol

from paygate.gateways.adapters.base import (
    AdapterConfig,
    Decline,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
)
from paygate.payments.gateway_reports import DisputeStatus

# How far a signed timestamp may be from paygate's clock, either way (Stripe's default, and
# the Standard Webhooks one).
TOLERANCE = timedelta(minutes=5)


@dataclass(frozen=True)
class SigningSecret:
    value: str
    label: str  # "current", or "previous" while a replaced secret's grace lasts


@dataclass(frozen=True)
class WebhookRequest:
    """A received webhook as verification sees it."""

    gateway_id: str
    body: bytes
    headers: Mapping[str, str]  # lower-case names
    url: str  # the notification URL paygate shows for this gateway (Square signs it)
    received_at: datetime


@dataclass(frozen=True)
class Verdict:
    ok: bool
    # Why it was refused (said to the sender, stored, never a secret); or which secret
    # verified it.
    detail: str

    @classmethod
    def refused(cls, reason: str) -> Verdict:
        return cls(False, reason)

    @classmethod
    def verified_with(cls, secret: SigningSecret) -> Verdict:
        return cls(True, f"signature verified with the {secret.label} secret")


class VerificationUnavailable(Exception):
    """The provider's verification API could not answer: the sender should retry."""


@dataclass(frozen=True)
class EventIdentity:
    event_id: str | None
    event_type: str | None
    occurred_at: datetime | None


# --- what an event says, gateway-neutral ---------------------------------------------


@dataclass(frozen=True)
class ObjectRef:
    """How to find paygate's object: the gateway's ids for it, or paygate's own id echoed."""

    references: tuple[str, ...] = ()
    paygate_id: str | None = None

    def __bool__(self) -> bool:
        return bool(self.references or self.paygate_id)


@dataclass(frozen=True)
class PaymentNotice:
    payment: ObjectRef
    status: GatewayPaymentStatus
    amount: int
    currency: str
    raw_status: str
    decline: Decline | None = None


@dataclass(frozen=True)
class RefundNotice:
    payment: ObjectRef
    reference: str  # the gateway's refund id
    paygate_id: str | None  # paygate's refund id when the gateway echoes it
    status: GatewayRefundStatus
    amount: int
    currency: str
    raw_status: str


@dataclass(frozen=True)
class DisputeNotice:
    payment: ObjectRef
    reference: str
    status: DisputeStatus
    reason: str | None
    amount: int | None
    currency: str | None


@dataclass(frozen=True)
class IgnoredNotice:
    why: str


Notice = PaymentNotice | RefundNotice | DisputeNotice | IgnoredNotice


class MalformedEvent(ValueError):
    """A verified body that does not say what its type promises (missing amount, ...)."""


# --- registration and setup -----------------------------------------------------------


@dataclass(frozen=True)
class Registration:
    """What the provider answered when paygate registered its URL there."""

    endpoint_id: str
    # Configuration values to store (secret ones encrypted like every credential).
    configuration: dict[str, str]
    events: tuple[str, ...]


@dataclass(frozen=True)
class SetupGuide:
    """Shown on the gateway's card and edit page next to its webhook URL."""

    steps: tuple[str, ...]
    events: tuple[str, ...]
    secret_field: str
    can_register: bool
    notes: tuple[str, ...] = field(default=())


# The gateway's adapter configuration, built on demand: only a provider that asks its own
# API (PayPal) decrypts the gateway's credentials for it; the others verify with `secrets`.
ConfigSource = Callable[[], AdapterConfig]


class Provider(Protocol):
    gateway_type: ClassVar[GatewayType]
    # The configuration field verification needs (a secret, or PayPal's webhook id).
    secret_field: ClassVar[str]
    setup: ClassVar[SetupGuide]

    async def verify(
        self,
        request: WebhookRequest,
        secrets: Sequence[SigningSecret],
        config: ConfigSource,
        *,
        check_time: bool,
    ) -> Verdict:
        """Check the request's signature exactly as the provider documents it.

        `check_time` False skips the timestamp tolerance (a stored event replayed later).
        Raises VerificationUnavailable when the provider's API must be asked and cannot be.
        """
        ...

    def identify(self, request: WebhookRequest, event: Mapping[str, Any]) -> EventIdentity: ...

    def notices(self, event: Mapping[str, Any]) -> list[Notice]:
        """What the event says; MalformedEvent when its content contradicts its type."""
        ...

    async def register(self, config: AdapterConfig, url: str) -> Registration:
        """Create the endpoint at the provider (raises GatewayError when it refuses)."""
        ...

    async def expand(self, config: AdapterConfig, ref: ObjectRef) -> ObjectRef:
        """More ways to name the payment `ref` names, asked of the provider when paygate
        knows none of them (a Square payment id for a payment paygate knows by its order;
        a Stripe PaymentIntent for a Checkout session; a PayPal capture for an order).
        Raises GatewayError when the provider cannot answer."""
        ...


# --- helpers ---------------------------------------------------------------------------


def constant_time_equal(left: str | bytes, right: str | bytes) -> bool:
    a = left.encode() if isinstance(left, str) else left
    b = right.encode() if isinstance(right, str) else right
    return hmac.compare_digest(a, b)


def parse_json_object(body: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return value if isinstance(value, dict) else None


def text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def obj(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def integer(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def from_unix(value: Any) -> datetime | None:
    seconds = integer(value)
    return datetime.fromtimestamp(seconds, UTC) if seconds is not None else None


def from_rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def within_tolerance(signed_at: datetime, now: datetime) -> str | None:
    """None when `signed_at` is within the tolerance of `now`, else why not."""
    if signed_at < now - TOLERANCE:
        return "the signature's timestamp is more than 5 minutes old"
    if signed_at > now + TOLERANCE:
        return "the signature's timestamp is more than 5 minutes in the future"
    return None


def missing_headers(request: WebhookRequest, *names: str) -> Verdict | None:
    """A refusal naming the headers (as the provider spells them) the request lacks or
    sends empty; None when every one is there."""
    missing = [name for name in names if not request.headers.get(name.lower())]
    if not missing:
        return None
    return Verdict.refused(f"a required header is missing: {', '.join(missing)}")


def verify_signatures(
    request: WebhookRequest,
    secrets: Sequence[SigningSecret],
    signatures: Sequence[str],
    expected: Callable[[str], str | None],
    *,
    signed_at: int | None,
    check_time: bool,
    no_secret: str,
    no_match: str,
) -> Verdict:
    """The verdict on a shared-secret signature, whatever the provider's scheme.

    `expected(secret)` is the signature the provider would have sent with that secret (None:
    the secret cannot sign). Any of `signatures` matching it for any secret (the current one
    first, then the previous one while its grace lasts), compared in constant time, verifies
    the request; then `signed_at` (Unix seconds, when the scheme signs a time) must be within
    the tolerance unless `check_time` is False (a replay). `no_secret` / `no_match`: the
    provider's reasons for a gateway with no secret, and for no signature matching.
    """
    if not secrets:
        return Verdict.refused(no_secret)
    matched = None
    for secret in secrets:
        wanted = expected(secret.value)
        if wanted is not None and any(constant_time_equal(wanted, s) for s in signatures):
            matched = secret
            break
    if matched is None:
        return Verdict.refused(no_match)
    if check_time and signed_at is not None:
        problem = within_tolerance(datetime.fromtimestamp(signed_at, UTC), request.received_at)
        if problem:
            return Verdict.refused(problem)
    return Verdict.verified_with(matched)


def refs(*values: Any) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in values if isinstance(v, str) and v))
