"""Stripe's webhook endpoints API, which localstripe lacks, in front of localstripe.

Written from Stripe's API reference (docs.stripe.com/api/webhook_endpoints):
- POST /v1/webhook_endpoints {url, enabled_events[], description?, metadata?} answers the
  Webhook Endpoint object {id "we_...", object "webhook_endpoint", api_version, application,
  created, description, enabled_events, livemode, metadata, secret "whsec_...", status
  "enabled", url}; the `secret` only in this answer. A missing url or enabled_events is a
  400 `parameter_missing`; an url that is not http(s) a 400 `url_invalid`.
- GET /v1/webhook_endpoints (a list object), GET /v1/webhook_endpoints/{id} (no secret),
  DELETE /v1/webhook_endpoints/{id} -> {id, object, deleted: true}; unknown ids 404
  `resource_missing`.

Endpoints belong to the API key that created them. Each created endpoint is registered
with localstripe's own webhook sender (POST /_config/webhooks/{id} with url, secret and
events[]), so localstripe then delivers its events, signed with that secret, to the url:
the real thing end to end. localstripe cannot forget a webhook, so a deleted (or reset)
endpoint is re-registered there for an event type that never happens.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.responses import JSONResponse, Response

# localstripe never sends this type: a webhook registered for it alone is silent.
SILENT_EVENT = "paygate.emulator.silenced"


def _error(status: int, message: str, *, code: str, param: str | None = None) -> JSONResponse:
    error: dict[str, Any] = {"type": "invalid_request_error", "message": message, "code": code}
    if param:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)


class StripeWebhookEndpoints:
    def __init__(self, localstripe_url: str) -> None:
        self.localstripe_url = localstripe_url.rstrip("/")
        # id -> (api key, the endpoint object with its secret)
        self.endpoints: dict[str, tuple[str, dict[str, Any]]] = {}

    def reset_sync(self) -> None:
        for endpoint_id, (_, endpoint) in list(self.endpoints.items()):
            httpx.post(
                f"{self.localstripe_url}/_config/webhooks/{endpoint_id}",
                data={"url": endpoint["url"], "secret": "whsec_silenced", "events[]": SILENT_EVENT},
                timeout=10,
            )
        self.endpoints.clear()

    def secret_of(self, endpoint_id: str) -> str:
        return str(self.endpoints[endpoint_id][1]["secret"])

    async def route(
        self, method: str, rest: str, api_key: str, params: Mapping[str, Any]
    ) -> Response:
        if not rest and method == "POST":
            return await self._create(api_key, params)
        if not rest and method == "GET":
            data = [_public(e) for key, e in self.endpoints.values() if key == api_key]
            return JSONResponse(
                {"object": "list", "data": data, "has_more": False, "url": "/v1/webhook_endpoints"}
            )
        found = self.endpoints.get(rest)
        if found is None or found[0] != api_key:
            return _error(404, f"No such webhook endpoint: '{rest}'", code="resource_missing")
        if method == "GET":
            return JSONResponse(_public(found[1]))
        if method == "DELETE":
            del self.endpoints[rest]
            await self._silence(rest, found[1]["url"])
            return JSONResponse({"id": rest, "object": "webhook_endpoint", "deleted": True})
        return _error(404, f"Unrecognized request URL ({method}).", code="resource_missing")

    async def _create(self, api_key: str, params: Mapping[str, Any]) -> Response:
        url = params.get("url")
        events = params.get("enabled_events")
        if not isinstance(url, str) or not url:
            return _error(
                400, "Missing required param: url.", code="parameter_missing", param="url"
            )
        if not url.startswith(("https://", "http://")):
            return _error(400, "Invalid URL: must be http(s).", code="url_invalid", param="url")
        if isinstance(events, str):
            events = [events]
        if not isinstance(events, list) or not events:
            return _error(
                400,
                "Missing required param: enabled_events.",
                code="parameter_missing",
                param="enabled_events",
            )
        endpoint_id = "we_" + secrets.token_hex(12)
        endpoint = {
            "id": endpoint_id,
            "object": "webhook_endpoint",
            "api_version": None,
            "application": None,
            "created": int(time.time()),
            "description": params.get("description"),
            "enabled_events": list(events),
            "livemode": False,
            "metadata": params.get("metadata") or {},
            "secret": "whsec_" + secrets.token_urlsafe(24),
            "status": "enabled",
            "url": url,
        }
        data: list[tuple[str, str]] = [("url", url), ("secret", endpoint["secret"])]
        if "*" not in events:
            data += [("events[]", str(e)) for e in events]
        async with httpx.AsyncClient(timeout=10) as client:
            answer = await client.post(
                f"{self.localstripe_url}/_config/webhooks/{endpoint_id}",
                content=urlencode(data),
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
        if answer.status_code != 200:
            return _error(400, "localstripe refused the webhook.", code="url_invalid")
        self.endpoints[endpoint_id] = (api_key, endpoint)
        return JSONResponse(endpoint)

    async def _silence(self, endpoint_id: str, url: str) -> None:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.post(
                f"{self.localstripe_url}/_config/webhooks/{endpoint_id}",
                data={"url": url, "secret": "whsec_silenced", "events[]": SILENT_EVENT},
            )


def _public(endpoint: Mapping[str, Any]) -> dict[str, Any]:
    """The object as GET answers it: the secret is returned only at creation."""
    return {k: v for k, v in endpoint.items() if k != "secret"}
