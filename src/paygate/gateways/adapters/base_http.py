"""The one way an adapter calls its gateway: the httpx client (TLS, SSRF guard, timeout)
and `call_gateway`, which times, logs and records each call and maps transport failures.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
import structlog

from paygate.gateways.adapters.base import AdapterConfig, Environment
from paygate.gateways.adapters.base_errors import (
    GatewayError,
    GatewayMisconfigured,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.security.ssrf import GuardedTransport, OutboundRefused

logger = structlog.get_logger("paygate.gateway_calls")

T = TypeVar("T")


def http_client(config: AdapterConfig, *, base_url: str) -> httpx.AsyncClient:
    """An httpx client for one adapter call, with the configured timeout.

    A guarded client (every live gateway's; test ones' outside development) checks the
    address at connection time (security/ssrf.py): private addresses are refused even when
    a name resolves to one only now.
    """
    transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport(verify=tls_context())
    if config.guarded:
        transport = GuardedTransport(
            transport,
            resolver=config.resolver,
            require_https=config.environment is Environment.LIVE,
        )
    return httpx.AsyncClient(
        base_url=base_url,
        timeout=httpx.Timeout(config.timeout_seconds),
        headers={"User-Agent": "paygate/0.1"},
        transport=transport,
    )


@functools.cache
def tls_context() -> ssl.SSLContext:
    """httpx's default verified TLS context, built once per process.

    Building one loads the whole CA bundle (about 23 ms of CPU): per call, that was most
    of what a health check or a payment call cost paygate. It holds no tenant state, only
    the trusted CAs, and one context serves any number of connections.
    """
    return httpx.create_ssl_context()


@dataclass
class GatewayCallRecord:
    """One gateway call as the payments service stores it (`GET /api/v1/gateway-calls`).

    `request` and `response` are redacted summaries an adapter builds from non-secret
    fields only (ids, amounts, statuses, error codes): never a key, token or card number.
    """

    operation: str
    outcome: str = "ok"
    latency_ms: float = 0.0
    http_status: int | None = None
    request: dict[str, Any] = field(default_factory=dict)
    response: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


_recorder: ContextVar[list[GatewayCallRecord] | None] = ContextVar("gateway_calls", default=None)
_current: ContextVar[GatewayCallRecord | None] = ContextVar("gateway_call", default=None)


@contextmanager
def recording_gateway_calls() -> Iterator[list[GatewayCallRecord]]:
    """Collect the records of every gateway call made inside the block."""
    calls: list[GatewayCallRecord] = []
    token = _recorder.set(calls)
    try:
        yield calls
    finally:
        _recorder.reset(token)


def json_object(response: httpx.Response) -> dict[str, Any]:
    """The answer's body as a JSON object; {} when it is not one (an HTML error page, a
    list, nothing)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def record_response(http_status: int | None, summary: Mapping[str, Any]) -> None:
    """Called by an adapter inside `send` with the gateway's answer (redacted)."""
    current = _current.get()
    if current is not None:
        current.http_status = http_status
        current.response = dict(summary)


async def call_gateway(
    config: AdapterConfig,
    operation: str,
    send: Callable[[], Awaitable[T]],
    *,
    request_summary: Mapping[str, Any] | None = None,
) -> T:
    """Run one gateway call: time it, log and record its outcome, map transport failures.

    Adapters map provider errors (bad credentials, declines) themselves; this maps
    what is common to every HTTP call: timeouts and unreachable hosts.
    """
    record = GatewayCallRecord(operation=operation, request=dict(request_summary or {}))
    calls = _recorder.get()
    if calls is not None:
        calls.append(record)
    current = _current.set(record)
    started = time.perf_counter()
    try:
        return await send()
    except httpx.TimeoutException as exc:
        record.outcome = "timeout"
        sent = not isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
        record.error = f"timed out ({'after' if sent else 'before'} the request was sent)"
        raise GatewayTimeout(
            f"The gateway did not answer within {config.timeout_seconds:g} s.",
            request_sent=sent,
        ) from None
    except OutboundRefused:
        record.outcome = "refused"
        record.error = "private address refused"
        raise GatewayMisconfigured(
            "paygate refused to call the gateway: its address points at a private address."
        ) from None
    except httpx.TransportError as exc:
        record.outcome = "unreachable"
        record.error = "connection failed"
        raise GatewayUnavailable(
            "The gateway could not be reached (connection failed).",
            request_sent=not isinstance(exc, httpx.ConnectError),
            network=True,
        ) from None
    except GatewayError as exc:
        record.outcome = exc.code
        record.error = exc.message
        raise
    finally:
        _current.reset(current)
        record.latency_ms = round((time.perf_counter() - started) * 1000, 1)
        logger.info(
            "gateway_call",
            gateway_type=config.gateway_type.value,
            environment=config.environment.value,
            operation=operation,
            outcome=record.outcome,
            http_status=record.http_status,
            latency_ms=record.latency_ms,
        )
