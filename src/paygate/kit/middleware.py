"""ASGI middleware: request ids and access logs, metrics, the request body cap, and the
security headers and CORS."""

from __future__ import annotations

import json
import secrets
import time
import traceback
from collections.abc import Sequence
from typing import Any

import structlog
from prometheus_client import Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from paygate.kit.errors import INTERNAL_ERROR, PROBLEM_CONTENT_TYPE, Problem

logger = structlog.get_logger("paygate.http")

REQUESTS = Counter("paygate_http_requests_total", "HTTP requests", ["method", "route", "status"])
LATENCY = Histogram("paygate_http_request_seconds", "HTTP request latency", ["method", "route"])


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    return getattr(route, "path", None) or "unmatched"


class RequestContextMiddleware:
    """Gives each request an id (echoed as X-Request-Id), logs it, and counts it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = (
            incoming if 0 < len(incoming) <= 64 and incoming.isprintable() else secrets.token_hex(8)
        )
        scope.setdefault("state", {})["request_id"] = request_id
        status = 500
        started = False
        began = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # Logged by type and frames only: an exception's text may hold data we must not log.
            logger.error(
                "unhandled_error",
                error_type=type(exc).__name__,
                frames=traceback.format_tb(exc.__traceback__)[-5:],
                path=scope["path"],
            )
            if status != 500 or started:
                raise
            await send_problem(send_with_id, INTERNAL_ERROR.status, INTERNAL_ERROR.body())
        finally:
            elapsed = time.perf_counter() - began
            route = _route_of(scope)
            REQUESTS.labels(scope["method"], route, str(status)).inc()
            LATENCY.labels(scope["method"], route).observe(elapsed)
            if route not in ("/healthz", "/metrics", "/static"):
                logger.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 1),
                )
            structlog.contextvars.unbind_contextvars("request_id")


class BodyLimitMiddleware:
    """Refuses request bodies over `max_bytes` with a 413 problem, declared or streamed."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and not declared.isdigit():
            await send_problem(
                send,
                400,
                _problem(400, "bad-request", "Bad request", "Content-Length is not a number."),
            )
            return
        if declared is not None and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        received = 0
        refused = False

        async def counting_receive() -> Message:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request" and not refused:
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client left: it stops reading.
                    refused = True
                    await self._refuse(send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:  # the app's own answer to the cut-off body is dropped
                await send(message)

        await self.app(scope, counting_receive, guarded_send)

    async def _refuse(self, send: Send) -> None:
        detail = f"The request body is larger than {self.max_bytes} bytes."
        await send_problem(
            send, 413, _problem(413, "payload-too-large", "Payload too large", detail)
        )


def _problem(status: int, slug: str, title: str, detail: str) -> dict[str, object]:
    return Problem(status, slug, title, detail).body()


async def send_problem(send: Send, status: int, body: dict[str, object]) -> None:
    """Answer a problem+json directly from ASGI middleware (outside FastAPI's handlers)."""
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


# --- security headers and CORS ------------------------------------------------------------

# The policy every answer carries unless its handler widens it (see `ContentSecurityPolicy`).
BASE_CSP: dict[str, tuple[str, ...]] = {
    "default-src": ("'none'",),
    "script-src": ("'self'",),
    "style-src": ("'self'",),
    "img-src": ("'self'", "data:"),
    "font-src": ("'self'",),
    "connect-src": ("'self'",),
    "form-action": ("'self'",),
    "frame-ancestors": ("'none'",),
    "base-uri": ("'none'",),
    "object-src": ("'none'",),
}
CSP_STATE_KEY = "content_security_policy"
CORS_METHODS = "GET, POST, PUT, PATCH, DELETE"
CORS_HEADERS = "Authorization, Content-Type, Idempotency-Key, X-Request-Id"
CORS_EXPOSE = "X-Request-Id, Retry-After, Location"
HSTS = "max-age=63072000; includeSubDomains"


class ContentSecurityPolicy:
    """A page's additions to `BASE_CSP`: sources per directive, or a replaced directive."""

    def __init__(
        self,
        extra: dict[str, tuple[str, ...]] | None = None,
        *,
        replace: dict[str, tuple[str, ...]] | None = None,
    ) -> None:
        directives = {name: list(sources) for name, sources in BASE_CSP.items()}
        for name, sources in (replace or {}).items():
            if sources:
                directives[name] = list(sources)
            else:  # an empty replacement drops the directive
                directives.pop(name, None)
        for name, sources in (extra or {}).items():
            current = [s for s in directives.get(name, []) if s != "'none'"]
            directives[name] = current + [s for s in sources if s not in current]
        self.directives = directives

    @property
    def embeddable(self) -> bool:
        return self.directives["frame-ancestors"] != ["'none'"]

    def header(self) -> str:
        return "; ".join(f"{name} {' '.join(sources)}" for name, sources in self.directives.items())


def set_content_security_policy(scope_state: Any, policy: ContentSecurityPolicy) -> None:
    """Called by a handler (with `request.state`) to widen its own answer's policy."""
    setattr(scope_state, CSP_STATE_KEY, policy)


DEFAULT_CSP = ContentSecurityPolicy()


class SecurityHeadersMiddleware:
    """The one place that sets security headers (CSP, HSTS, framing, sniffing, referrer) and
    answers CORS, on every answer: pages, the API, static files and errors alike.

    CORS is for `/api/` only and only for the listed origins; no credentials (the API takes
    bearer tokens, not cookies). With no origins listed no CORS header is ever sent.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        hsts: bool,
        cors_origins: Sequence[str] = (),
    ) -> None:
        self.app = app
        self.hsts = hsts
        self.cors_origins = frozenset(o.rstrip("/") for o in cors_origins)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        origin = headers.get(b"origin", b"").decode("latin-1")
        api = scope["path"].startswith("/api/")
        cors = api and bool(self.cors_origins)
        allowed = cors and origin in self.cors_origins
        if (
            api
            and scope["method"] == "OPTIONS"
            and origin
            and b"access-control-request-method" in headers
        ):
            await self._preflight(send, allowed, origin)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                policy = scope.get("state", {}).get(CSP_STATE_KEY) or DEFAULT_CSP
                extra = self._security_headers(policy)
                if cors:
                    extra.append((b"vary", b"Origin"))
                if allowed:
                    extra += [
                        (b"access-control-allow-origin", origin.encode()),
                        (b"access-control-expose-headers", CORS_EXPOSE.encode()),
                    ]
                message["headers"] = _replace_headers(message.get("headers", []), extra)
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _security_headers(self, policy: ContentSecurityPolicy) -> list[tuple[bytes, bytes]]:
        extra = [
            (b"content-security-policy", policy.header().encode()),
            (b"x-content-type-options", b"nosniff"),
            (b"referrer-policy", b"same-origin"),
        ]
        if not policy.embeddable:
            extra.append((b"x-frame-options", b"DENY"))
        if self.hsts:
            extra.append((b"strict-transport-security", HSTS.encode()))
        return extra

    async def _preflight(self, send: Send, allowed: bool, origin: str) -> None:
        if not allowed:
            body = _problem(
                403, "cors-refused", "Origin not allowed", "This origin may not call the API."
            )
            payload = json.dumps(body).encode()
            headers = [
                (b"content-type", PROBLEM_CONTENT_TYPE.encode()),
                (b"content-length", str(len(payload)).encode()),
            ]
            status = 403
        else:
            payload = b""
            headers = [
                (b"access-control-allow-origin", origin.encode()),
                (b"access-control-allow-methods", CORS_METHODS.encode()),
                (b"access-control-allow-headers", CORS_HEADERS.encode()),
                (b"access-control-max-age", b"600"),
                (b"content-length", b"0"),
            ]
            status = 204
        headers += [*self._security_headers(DEFAULT_CSP), (b"vary", b"Origin")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})


def _replace_headers(
    current: Sequence[tuple[bytes, bytes]], extra: Sequence[tuple[bytes, bytes]]
) -> list[tuple[bytes, bytes]]:
    names = {name for name, _ in extra if name != b"vary"}
    return [(k, v) for k, v in current if k.lower() not in names] + list(extra)
