"""Reaching a gateway: its decrypted secrets, the adapter configuration built from them (a
clear 409 on the payment paths when they cannot be read), and the connection probe that
"Test connection" and the scheduled health checks share."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import structlog

from paygate.gateways.adapters.base import AdapterConfig, Environment, GatewayType
from paygate.gateways.adapters.base_errors import GatewayError
from paygate.gateways.adapters.registry import build_adapter
from paygate.gateways.credentials import Envelope, open_envelope
from paygate.gateways.models import Gateway
from paygate.kit.errors import Problem
from paygate.security.crypto import Keyring, KeyringError
from paygate.security.ssrf import Resolver, resolve_host
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

UNDECRYPTABLE = (
    "The stored credentials cannot be decrypted with the configured master keys. "
    "Restore the missing key, or edit the gateway and enter its secrets again."
)
CREDENTIALS_UNREADABLE = "gateway-credentials-unreadable"


def secrets_of(gateway: Gateway, keyring: Keyring) -> dict[str, str]:
    """A gateway's decrypted current secrets, for one call; raises KeyringError loudly."""
    return envelope_of(gateway, keyring).current


def envelope_of(gateway: Gateway, keyring: Keyring) -> Envelope:
    """Current and previous secrets; raises KeyringError loudly."""
    try:
        return open_envelope(gateway, keyring)
    except KeyringError as exc:
        # Loud, never silent: the operator must restore the key or the admin re-enter secrets.
        logger.error(
            "gateway_secrets_undecryptable",
            gateway_id=gateway.id,
            key_id=gateway.key_id,
            reason=str(exc),
        )
        raise


def adapter_config(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> AdapterConfig:
    """What an adapter is built from: the gateway's settings and decrypted secrets."""
    return AdapterConfig(
        gateway_type=GatewayType(gateway.gateway_type),
        environment=Environment(gateway.environment),
        values={**gateway.public_config, **secrets_of(gateway, keyring)},
        timeout_seconds=settings.gateway_timeout_seconds,
        public_base_url=settings.base_url,
        resolver=resolver,
        guard_outbound=(
            gateway.environment == Environment.LIVE.value
            or not settings.private_addresses_for_test_gateways
        ),
    )


def payable_config(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> AdapterConfig:
    """`adapter_config` for the payment paths: unreadable secrets are a clear 409 problem.

    Raised before anything is written or sent, so the caller's transaction rolls back, the
    idempotency key is freed, and a retry after the fix goes through. Never skipped: the
    caller asked for this gateway (or routing chose it) and must learn why it cannot be used.
    """
    try:
        return adapter_config(gateway, keyring, settings, resolver)
    except KeyringError:
        raise Problem(
            409,
            CREDENTIALS_UNREADABLE,
            "Gateway credentials unreadable",
            f"The stored credentials of gateway {gateway.id} cannot be decrypted with the "
            "configured master keys: nothing was sent to the gateway. Restore the missing "
            "master key, or edit the gateway and enter its secrets again.",
        ) from None


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    latency_ms: int
    # Why it failed, as the error taxonomy names it ("unavailable", "timeout",
    # "misconfigured", ..., or "credentials_unreadable"); None when it worked.
    error_code: str | None = None


async def probe_connection(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> ConnectionResult:
    """The real call "Test connection" makes; scheduled health checks make the same one.

    Never raises for a gateway problem: the answer says what went wrong, in words that
    hold no secret (the adapters' messages never do).
    """
    started = time.perf_counter()
    code: str | None = None
    try:
        adapter = build_adapter(adapter_config(gateway, keyring, settings, resolver))
        # The adapter's own timeout applies per call; this bounds the whole check.
        async with asyncio.timeout(settings.gateway_timeout_seconds * 2 + 1):
            check = await adapter.test_connection()
        ok, message = True, check.message
    except GatewayError as exc:
        ok, message, code = False, exc.message, exc.code
    except KeyringError:
        ok, message, code = False, UNDECRYPTABLE, "credentials_unreadable"
    except TimeoutError:
        ok, message = False, f"Timed out after {settings.gateway_timeout_seconds:g} s."
        code = "timeout"
    latency_ms = round((time.perf_counter() - started) * 1000)
    return ConnectionResult(ok, message, latency_ms, code)
