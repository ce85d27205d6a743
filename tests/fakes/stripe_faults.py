"""A pass-through proxy in front of localstripe that adds the fault knobs it lacks.

localstripe has no way to be slow or to fail; this proxy forwards every request
unchanged and applies the shared `Knobs` first (delay, 5xx with Stripe's error body),
so the Stripe adapter's timeout and server-error paths run against the real SDK.
"""

from __future__ import annotations

from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.common import Emulator

# Hop-by-hop headers a proxy must not forward.
_HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


class StripeFaultProxy(Emulator):
    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.app: ASGIApp = self.wrap(self._forward)

    def server_error_body(self, status: int) -> dict[str, Any]:
        # Stripe's error envelope for its own failures.
        return {
            "error": {
                "type": "api_error",
                "message": "An unknown error occurred, please try again.",
            }
        }

    async def _forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            upstream = await client.request(
                request.method,
                request.url.path,
                params=request.url.query,
                headers=headers,
                content=await request.body(),
            )
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        out_headers.pop("content-encoding", None)
        response = Response(upstream.content, upstream.status_code, headers=out_headers)
        await response(scope, receive, send)
