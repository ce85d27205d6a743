"""The one interface every gateway adapter implements, and the typed requests and results
it takes and gives.

An adapter is built per call from one company's decrypted configuration
(`AdapterConfig`); it never keeps tenant state in module globals. The errors it may raise
are in base_errors.py; the one way to make a gateway call is in base_http.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol
from urllib.parse import urlsplit

from paygate.gateways.adapters.base_errors import GatewayUnavailable
from paygate.security.ssrf import Resolver, resolve_host


class GatewayType(StrEnum):
    STRIPE = "stripe"
    PAYPAL = "paypal"
    SQUARE = "square"
    CUSTOM = "custom"
    SANDBOX = "sandbox"


class Environment(StrEnum):
    TEST = "test"
    LIVE = "live"


class FieldKind(StrEnum):
    TEXT = "text"
    SECRET = "secret"
    URL = "url"
    # One of `FieldSpec.choices`, shown as a select.
    CHOICE = "choice"


@dataclass(frozen=True)
class FieldSpec:
    """One configuration field of a gateway type, as the API and the form describe it."""

    name: str
    label: str
    kind: FieldKind = FieldKind.TEXT
    required: bool = True
    help: str = ""
    # Accepted prefixes per environment: a test gateway refuses a live key and back.
    prefixes: Mapping[Environment, tuple[str, ...]] = field(default_factory=dict)
    pattern: str | None = None
    max_length: int = 512
    # The accepted values of a CHOICE field, the first being the default.
    choices: tuple[str, ...] = ()

    @property
    def secret(self) -> bool:
        return self.kind is FieldKind.SECRET

    def known_prefixes(self) -> tuple[str, ...]:
        """Every prefix this field may start with, longest first (used when masking)."""
        found = {prefix for group in self.prefixes.values() for prefix in group}
        return tuple(sorted(found, key=len, reverse=True))


@dataclass(frozen=True)
class GatewayTypeSpec:
    type: GatewayType
    display_name: str
    description: str
    payment_method_types: tuple[str, ...]
    fields: tuple[FieldSpec, ...]
    # Where the provider's API lives when `api_base_url` is not configured.
    default_api_base_url: Mapping[Environment, str] = field(default_factory=dict)

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)


@dataclass(frozen=True)
class AdapterConfig:
    """A company's decrypted gateway configuration, handed to one adapter for one call."""

    gateway_type: GatewayType
    environment: Environment
    values: Mapping[str, str]
    timeout_seconds: float = 10.0
    # paygate's own public URL: the sandbox's hosted customer-action page lives there.
    public_base_url: str = ""
    # How a live gateway's host names are resolved before connecting (tests inject one).
    resolver: Resolver = resolve_host
    # Whether calls go through the SSRF guard (security/ssrf.py). None: live gateways only;
    # adapter_config() guards test gateways too unless the settings let them reach private
    # addresses (development).
    guard_outbound: bool | None = None

    @property
    def guarded(self) -> bool:
        if self.guard_outbound is not None:
            return self.guard_outbound
        return self.environment is Environment.LIVE

    def value(self, name: str) -> str:
        return self.values.get(name) or ""

    def api_base_url(self, spec: GatewayTypeSpec) -> str:
        configured = self.values.get("api_base_url")
        base = configured or spec.default_api_base_url.get(self.environment, "")
        return base.rstrip("/")


@dataclass(frozen=True)
class ConnectionCheck:
    """What a successful connection test found, in plain words."""

    message: str


# --- payments at the gateway boundary ---------------------------------------------


class DeclineCode(StrEnum):
    """paygate's standard decline codes; adapters map the provider's codes onto these."""

    CARD_DECLINED = "card_declined"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    EXPIRED_CARD = "expired_card"
    INCORRECT_CVC = "incorrect_cvc"
    PROCESSING_ERROR = "processing_error"
    FRAUD_SUSPECTED = "fraud_suspected"
    AUTHENTICATION_FAILED = "authentication_failed"
    CUSTOMER_CANCELED = "customer_canceled"


# Plain words for the customer, one per code; providers' own messages are never shown.
DECLINE_MESSAGES: dict[DeclineCode, str] = {
    DeclineCode.CARD_DECLINED: "The card was declined.",
    DeclineCode.INSUFFICIENT_FUNDS: "The card has insufficient funds.",
    DeclineCode.EXPIRED_CARD: "The card has expired.",
    DeclineCode.INCORRECT_CVC: "The card's security code is incorrect.",
    DeclineCode.PROCESSING_ERROR: "An error occurred while processing the card; try again.",
    DeclineCode.FRAUD_SUSPECTED: "The payment was refused.",
    DeclineCode.AUTHENTICATION_FAILED: "The card's authentication (3-D Secure) did not succeed.",
    DeclineCode.CUSTOMER_CANCELED: "The payment was canceled.",
}


class PaymentFlow(StrEnum):
    # The customer's payment method token is charged by paygate's server.
    DIRECT = "direct"
    # The customer is sent to the gateway's hosted page (Stripe Checkout, PayPal approval,
    # Square payment link) and comes back to `return_url`.
    HOSTED = "hosted"


@dataclass(frozen=True)
class PaymentRequest:
    """One attempt to collect `amount` (minor units) in `currency`."""

    reference: str  # paygate's payment id: shown in the gateway's dashboard
    idempotency_key: str  # the attempt's id: the same key never charges twice
    amount: int
    currency: str
    flow: PaymentFlow = PaymentFlow.DIRECT
    payment_method: str | None = None  # pm_..., a Square nonce, tok_..., a sandbox card
    return_url: str | None = None  # where a hosted flow or a customer action comes back
    cancel_url: str | None = None
    description: str = ""
    customer_email: str | None = None


class GatewayPaymentStatus(StrEnum):
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    CANCELED = "canceled"


@dataclass(frozen=True)
class NextAction:
    """What the customer must do before the gateway can finish the payment."""

    type: str  # "redirect" or "stripe_sdk" (3-D Secure through Stripe.js)
    redirect_url: str | None = None
    client_secret: str | None = None

    def __post_init__(self) -> None:
        # The customer's browser is sent there: only a web page, never javascript: or data:
        # (a tenant's own custom gateway chooses this URL).
        if self.type == "redirect" and not _is_web_page(self.redirect_url):
            raise GatewayUnavailable(
                "The gateway asked to send the customer to an address that is not an http(s) "
                "web page."
            )


def _is_web_page(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url)
    return parts.scheme in ("https", "http") and bool(parts.hostname) and not parts.username


@dataclass(frozen=True)
class Decline:
    code: DeclineCode
    message: str  # plain words for the customer
    hard: bool  # a hard decline fails again whatever happens
    gateway_code: str | None = None  # the provider's own code, kept for support


@dataclass(frozen=True)
class PaymentResult:
    """The gateway's answer. The caller checks `amount` and `currency` against the request."""

    gateway_reference: str  # the provider's id (pi_..., order id, payment id)
    status: GatewayPaymentStatus
    amount: int
    currency: str
    next_action: NextAction | None = None
    decline: Decline | None = None  # set when status is FAILED
    raw_status: str = ""  # the provider's own status word


@dataclass(frozen=True)
class RefundRequest:
    reference: str  # paygate's refund id
    idempotency_key: str
    gateway_payment_reference: str
    amount: int
    currency: str
    reason: str | None = None


class GatewayRefundStatus(StrEnum):
    SUCCEEDED = "succeeded"
    PENDING = "pending"
    FAILED = "failed"


@dataclass(frozen=True)
class RefundResult:
    gateway_reference: str
    status: GatewayRefundStatus
    amount: int
    currency: str
    raw_status: str = ""


class GatewayAdapter(Protocol):
    spec: ClassVar[GatewayTypeSpec]

    def __init__(self, config: AdapterConfig) -> None: ...

    async def test_connection(self) -> ConnectionCheck:
        """Make one real, harmless call with the stored credentials.

        Returns what was found, or raises a `GatewayError` saying in plain words what is wrong.
        """
        ...

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        """Start (and where the flow allows, finish) a payment.

        A decline is a `GatewayDeclined`; a timeout after the request was sent is a
        `GatewayTimeout(request_sent=True)`: the outcome is then unknown, not failed.
        """
        ...

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        """Finish a payment after the customer acted (came back from a redirect or
        3-D Secure): confirm, capture or re-read it at the gateway, never trusting the browser.
        `return_params` are the query parameters the gateway sent the customer back with."""
        ...

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        """Ask the gateway what became of a payment. Without a reference (the create call
        timed out), find it by the request's idempotency key."""
        ...

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        """Refund part or all of a succeeded payment."""
        ...

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        """Ask the gateway what became of a refund. Without a reference (the refund call
        timed out), find it by the request's idempotency key — re-issuing the refund with
        the same key where the provider replays it."""
        ...

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        """Withdraw a payment the customer abandoned (it waits for their action), so it can
        never be completed later. Returns the gateway's state: CANCELED, or the real state
        when the payment already moved on. Raises GatewayRejected where the provider cannot
        withdraw it; paygate then keeps it open."""
        ...
