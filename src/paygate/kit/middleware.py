"""ASGI middleware: request ids and access logs, metrics, and the request body cap."""

from __future__ import annotations

import json
import secrets
import time
import traceback

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
