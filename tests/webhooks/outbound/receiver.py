"""A company's webhook receiver on 127.0.0.1: verifies every delivery with the
`standardwebhooks` package, records it, and answers as a test plans (a status, or a hang
longer than paygate's timeout)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

HANG = -1  # a planned answer: wait longer than paygate's timeout, then answer 200


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    # Which of the receiver's secrets verified the delivery (standardwebhooks' verify).
    verified_with: tuple[str, ...]
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed

    @property
    def signatures(self) -> list[str]:
        return self.headers["webhook-signature"].split(" ")


@dataclass
class Receiver:
    secrets: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    # Answers for the next requests, in order; then `default_status`.
    plan: deque[int] = field(default_factory=deque)
    default_status: int = 200
    hang_seconds: float = 3.0
    answer_body: str = "ok"
    base_url: str = ""
    # Requests that arrived, counted before any planned hang (`received` records at the end).
    arrivals: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self.app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])

    def reset(self) -> None:
        with self._lock:
            self.secrets.clear()
            self.received.clear()
            self.arrivals.clear()
            self.plan.clear()
            self.default_status = 200
            self.answer_body = "ok"

    def url(self, path: str = "hooks") -> str:
        return f"{self.base_url}/{path}"

    def verified(self) -> list[Received]:
        return [r for r in self.received if r.verified_with]

    async def _handle(self, request: Request) -> PlainTextResponse:
        body = await request.body()
        headers = {k.lower(): v for k, v in request.headers.items()}
        verified = []
        for secret in list(self.secrets):
            try:
                Webhook(secret).verify(body, headers)
            except WebhookVerificationError:
                continue
            verified.append(secret)
        with self._lock:
            self.arrivals.append(headers.get("webhook-id", ""))
            status = self.plan.popleft() if self.plan else self.default_status
        if status == HANG:
            await asyncio.sleep(self.hang_seconds)
            status = 200
        with self._lock:
            self.received.append(Received(request.url.path, headers, body, tuple(verified), status))
        return PlainTextResponse(self.answer_body, status_code=status)
