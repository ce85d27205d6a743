"""One HTTP request of a delivery: sign, send, read the first 2 KB of the answer.

Outside development the URL goes through `GuardedTransport` (security/ssrf.py): the host
is resolved and checked when the request is made, so a name that pointed at a public
address when the endpoint was saved and at 127.0.0.1 now is refused (DNS rebinding).
Redirects are not followed: a 3xx is a failed attempt, like Svix.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from paygate.kit.clock import utcnow
from paygate.security.ssrf import (
    GuardedTransport,
    OutboundRefused,
    Resolver,
    UnsafeURL,
    check_url_shape,
    resolve_host,
)
from paygate.webhooks.outbound.schedule import retry_after
from paygate.webhooks.outbound.secrets import signature_header

RESPONSE_KEPT_BYTES = 2048
USER_AGENT = "paygate-webhooks/1"


@dataclass(frozen=True)
class Request:
    url: str
    message_id: str
    body: str
    secrets: list[str]


@dataclass(frozen=True)
class Outcome:
    status_code: int | None
    latency_ms: float | None
    response_body: str | None
    error: str | None
    # A timeout or a 429: the endpoint is overloaded, the next try waits at least a minute.
    overloaded: bool = False
    retry_after: timedelta | None = None

    @property
    def succeeded(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def url_reason(exc: UnsafeURL) -> str:
    """The guard's reason, worded for an endpoint (its https rule names live gateways)."""
    return exc.reason.replace(" for a live gateway", "")


def failed(error: str) -> Outcome:
    return Outcome(None, None, None, error)


def _text(head: bytes) -> str:
    # PostgreSQL text refuses NUL; the rest is shown as the receiver sent it.
    return head.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


async def _read_head(response: httpx.Response) -> bytes:
    kept = b""
    async for chunk in response.aiter_bytes():
        kept += chunk
        if len(kept) >= RESPONSE_KEPT_BYTES:
            break
    return kept[:RESPONSE_KEPT_BYTES]


def headers_for(request: Request, at: datetime) -> dict[str, str]:
    """The Standard Webhooks headers: webhook-id is the message id on every attempt, the
    timestamp is the attempt's, and the signature covers `id.timestamp.body`."""
    return {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": request.message_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature_header(
            request.secrets, request.message_id, at, request.body
        ),
    }


async def send(
    request: Request,
    *,
    timeout_seconds: float,
    guarded: bool,
    resolver: Resolver = resolve_host,
    transport: httpx.AsyncBaseTransport | None = None,
) -> Outcome:
    """POST the body; never raises for what the network or the endpoint does."""
    try:
        check_url_shape(request.url, live=guarded)
    except UnsafeURL as exc:
        return failed(f"refused: the URL {url_reason(exc)}")
    inner = transport or httpx.AsyncHTTPTransport()
    chosen: httpx.AsyncBaseTransport = (
        GuardedTransport(inner, resolver=resolver, require_https=True) if guarded else inner
    )
    headers = headers_for(request, utcnow())
    started = time.perf_counter()
    try:
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(
                transport=chosen, timeout=timeout_seconds, follow_redirects=False
            ) as client,
            client.stream(
                "POST", request.url, content=request.body.encode(), headers=headers
            ) as response,
        ):
            head = await _read_head(response)
            latency = (time.perf_counter() - started) * 1000
            status = response.status_code
            wait = retry_after(response.headers.get("retry-after"), utcnow())
    except OutboundRefused as exc:
        return failed(str(exc))
    except (TimeoutError, httpx.TimeoutException):
        return Outcome(
            None,
            (time.perf_counter() - started) * 1000,
            None,
            f"no answer within {timeout_seconds:g} s",
            overloaded=True,
        )
    except httpx.HTTPError as exc:
        return failed(f"could not connect ({type(exc).__name__})")
    return Outcome(
        status,
        round(latency, 1),
        _text(head),
        None if 200 <= status < 300 else f"answered HTTP {status}",
        overloaded=status == 429,
        retry_after=wait if status in (429, 503) else None,
    )
