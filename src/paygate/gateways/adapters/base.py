"""The one interface every gateway adapter implements, and the errors it may raise.

An adapter is built per call from one company's decrypted configuration
(`AdapterConfig`); it never keeps tenant state in module globals.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import ClassVar, Protocol, TypeVar

import httpx
import structlog

logger = structlog.get_logger("paygate.gateway_calls")

T = TypeVar("T")


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


# --- error taxonomy ---------------------------------------------------------------
# Messages are shown to users and written to logs: they never contain a secret.


class GatewayError(Exception):
    code: ClassVar[str] = "gateway_error"

    def __init__(self, message: str, *, gateway_code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.gateway_code = gateway_code


class GatewayDeclined(GatewayError):
    """The gateway refused the payment itself (card declined, insufficient funds, ...)."""

    code = "declined"

    def __init__(
        self,
        message: str,
        *,
        decline_code: str,
        hard: bool,
        gateway_code: str | None = None,
    ) -> None:
        super().__init__(message, gateway_code=gateway_code)
        self.decline_code = decline_code
        self.hard = hard


class GatewayUnavailable(GatewayError):
    """Network error, timeout or 5xx: safe to retry or fail over."""

    code = "unavailable"


class GatewayTimeout(GatewayUnavailable):
    code = "timeout"

    def __init__(self, message: str, *, request_sent: bool) -> None:
        super().__init__(message)
        # A timeout after the request was sent leaves the outcome unknown.
        self.request_sent = request_sent


class GatewayMisconfigured(GatewayError):
    """Credentials or account settings are wrong: retrying will not help."""

    code = "misconfigured"


class GatewayRejected(GatewayError):
    """The gateway refused the request as invalid."""

    code = "rejected"


class GatewayAdapter(Protocol):
    spec: ClassVar[GatewayTypeSpec]

    def __init__(self, config: AdapterConfig) -> None: ...

    async def test_connection(self) -> ConnectionCheck:
        """Make one real, harmless call with the stored credentials.

        Returns what was found, or raises a `GatewayError` saying in plain words what is wrong.
        """
        ...


# --- the one way to call a gateway ------------------------------------------------


def http_client(config: AdapterConfig, *, base_url: str) -> httpx.AsyncClient:
    """An httpx client for one adapter call, with the configured timeout."""
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(config.timeout_seconds),
        headers={"User-Agent": "paygate/0.1"},
    )


async def call_gateway(
    config: AdapterConfig,
    operation: str,
    send: Callable[[], Awaitable[T]],
) -> T:
    """Run one gateway call: time it, log its outcome, and map transport failures.

    Adapters map provider errors (bad credentials, declines) themselves; this maps
    what is common to every HTTP call: timeouts and unreachable hosts.
    """
    started = time.perf_counter()
    outcome = "ok"
    try:
        return await send()
    except httpx.TimeoutException as exc:
        outcome = "timeout"
        sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        raise GatewayTimeout(
            f"The gateway did not answer within {config.timeout_seconds:g} s.",
            request_sent=sent,
        ) from None
    except httpx.TransportError:
        outcome = "unreachable"
        raise GatewayUnavailable("The gateway could not be reached (connection failed).") from None
    except GatewayError as exc:
        outcome = exc.code
        raise
    finally:
        logger.info(
            "gateway_call",
            gateway_type=config.gateway_type.value,
            environment=config.environment.value,
            operation=operation,
            outcome=outcome,
            latency_ms=round((time.perf_counter() - started) * 1000, 1),
        )
