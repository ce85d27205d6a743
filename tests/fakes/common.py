"""What every gateway emulator shares: fault knobs and a log of the requests it received.

An emulator is an object holding in-memory state plus an ASGI app built from it
(`emulator.app`). Tests change the state and the knobs directly; the app runs in a
uvicorn thread (see servers.py), so simple attribute writes are enough.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Knobs:
    """Faults a test can switch on. `reset()` puts everything back."""

    # Seconds to wait before handling each request (to make the client time out).
    delay_seconds: float = 0.0
    # Answer every request with this HTTP status and the provider's server-error body.
    fail_status: int | None = None
    # With fail_status: fail only this many requests, then answer normally (None: all).
    fail_times: int | None = None

    def reset(self) -> None:
        self.delay_seconds = 0.0
        self.fail_status = None
        self.fail_times = None

    def take_failure(self) -> int | None:
        """The status to fail this request with, counting down `fail_times`."""
        if self.fail_status is None:
            return None
        if self.fail_times is not None:
            if self.fail_times <= 0:
                return None
            self.fail_times -= 1
        return self.fail_status


@dataclass(frozen=True)
class WebhookDelivery:
    """A webhook an emulator would send: the event, its exact body bytes and signed headers
    (and, for providers that send to a registered URL, where it goes)."""

    event: dict[str, Any]
    body: bytes
    headers: dict[str, str]
    url: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    headers: dict[str, str]


class Emulator:
    """Base of the gateway emulators. Subclasses build `app` and say how a 5xx looks."""

    def __init__(self) -> None:
        self.knobs = Knobs()
        self.requests: list[RecordedRequest] = []
        # Set by the server helper once the app listens.
        self.base_url = ""
        self._lock = threading.Lock()

    def server_error_body(self, status: int) -> dict[str, Any]:
        return {"error": {"type": "internal_error", "message": f"HTTP {status}"}}

    def reset(self) -> None:
        """Forget recorded requests and faults; subclasses also reset their state."""
        self.knobs.reset()
        with self._lock:
            self.requests.clear()

    def wrap(self, app: ASGIApp) -> ASGIApp:
        """The ASGI app with the knobs and the request log in front of it."""
        return _KnobsMiddleware(app, self)

    def record(self, scope: Scope) -> None:
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope.get("headers", [])}
        entry = RecordedRequest(
            method=scope.get("method", ""),
            path=scope.get("path", ""),
            query=scope.get("query_string", b"").decode("latin-1"),
            headers=headers,
        )
        with self._lock:
            self.requests.append(entry)


class _KnobsMiddleware:
    def __init__(self, app: ASGIApp, emulator: Emulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.emulator.record(scope)
        knobs = self.emulator.knobs
        if knobs.delay_seconds > 0:
            await asyncio.sleep(knobs.delay_seconds)
        status = knobs.take_failure()
        if status is None:
            await self.app(scope, receive, send)
            return
        await send_json(send, status, self.emulator.server_error_body(status))


async def send_json(send: Send, status: int, body: Any) -> None:
    payload = json.dumps(body).encode()
    start: Message = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
        ],
    }
    await send(start)
    await send({"type": "http.response.body", "body": payload})
