"""Square's Webhook Subscriptions API and signed event notifications, for the Square emulator.

Written from developer.squareup.com's reference:
- POST /v2/webhooks/subscriptions {idempotency_key, subscription: {name, event_types,
  notification_url, api_version?}} -> {"subscription": WebhookSubscription} with
  {id "wbhk_...", name, enabled, event_types, notification_url, api_version, signature_key,
  created_at, updated_at}. A missing notification_url or event_types answers 400
  INVALID_REQUEST_ERROR / MISSING_REQUIRED_PARAMETER; the same idempotency_key answers
  the first subscription again.
- GET /v2/webhooks/subscriptions {"subscriptions": [...]} (signature keys not listed),
  GET and DELETE /v2/webhooks/subscriptions/{id},
  POST /v2/webhooks/subscriptions/{id}/signature-key -> {"signature_key": new key}
  (the old key stops signing at once, as Square rotates it).

Notifications: `notify(...)` builds Square's event body {merchant_id, type, event_id,
created_at, data: {type, id, object: {<type>: the object}}} and, for every enabled
subscription of the event type, a delivery signed as Square signs: header
`x-square-hmacsha256-signature` = base64(HMAC-SHA256(signature_key, notification_url +
body)). Deliveries go to `outbox`, for a test to POST wherever it wants.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.fakes.common import WebhookDelivery


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def square_signature(key: str, url: str, body: bytes) -> str:
    return base64.b64encode(
        hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    ).decode()


class SquareWebhooks:
    def __init__(self, merchant_id: str) -> None:
        self.merchant_id = merchant_id
        self.subscriptions: dict[str, dict[str, Any]] = {}
        self.outbox: list[WebhookDelivery] = []
        self._idempotency: dict[str, str] = {}

    def reset(self) -> None:
        self.subscriptions.clear()
        self.outbox.clear()
        self._idempotency.clear()

    def routes(self, authenticate: Any) -> list[Route]:
        async def create(request: Request) -> Response:
            return await self._create(request, authenticate)

        async def listing(request: Request) -> Response:
            if (denied := authenticate(request)) is not None:
                return denied  # type: ignore[no-any-return]
            return JSONResponse(
                {"subscriptions": [_listed(s) for s in self.subscriptions.values()]}
            )

        async def one(request: Request) -> Response:
            if (denied := authenticate(request)) is not None:
                return denied  # type: ignore[no-any-return]
            found = self.subscriptions.get(request.path_params["subscription_id"])
            if found is None:
                return _error(404, "NOT_FOUND", "Subscription not found.", "NOT_FOUND_ERROR")
            if request.method == "DELETE":
                del self.subscriptions[found["id"]]
                return JSONResponse({})
            return JSONResponse({"subscription": found})

        async def rotate(request: Request) -> Response:
            if (denied := authenticate(request)) is not None:
                return denied  # type: ignore[no-any-return]
            found = self.subscriptions.get(request.path_params["subscription_id"])
            if found is None:
                return _error(404, "NOT_FOUND", "Subscription not found.", "NOT_FOUND_ERROR")
            found["signature_key"] = secrets.token_urlsafe(16)
            found["updated_at"] = _now()
            return JSONResponse({"signature_key": found["signature_key"]})

        return [
            Route("/v2/webhooks/subscriptions", create, methods=["POST"]),
            Route("/v2/webhooks/subscriptions", listing, methods=["GET"]),
            Route("/v2/webhooks/subscriptions/{subscription_id}", one, methods=["GET", "DELETE"]),
            Route(
                "/v2/webhooks/subscriptions/{subscription_id}/signature-key",
                rotate,
                methods=["POST"],
            ),
        ]

    async def _create(self, request: Request, authenticate: Any) -> Response:
        if (denied := authenticate(request)) is not None:
            return denied  # type: ignore[no-any-return]
        try:
            body = json.loads(await request.body())
        except ValueError:
            return _error(400, "INVALID_JSON", "The body is not JSON.", "INVALID_REQUEST_ERROR")
        given = body.get("subscription") if isinstance(body, dict) else None
        if not isinstance(given, dict):
            return _missing("subscription")
        for field in ("notification_url", "event_types"):
            if not given.get(field):
                return _missing(f"subscription.{field}")
        key = body.get("idempotency_key")
        if isinstance(key, str) and key in self._idempotency:
            return JSONResponse({"subscription": self.subscriptions[self._idempotency[key]]})
        now = _now()
        subscription = {
            "id": "wbhk_" + secrets.token_hex(16),
            "name": given.get("name") or "Webhook",
            "enabled": bool(given.get("enabled", True)),
            "event_types": list(given["event_types"]),
            "notification_url": given["notification_url"],
            "api_version": given.get("api_version") or "2025-01-23",
            "signature_key": secrets.token_urlsafe(16),
            "created_at": now,
            "updated_at": now,
        }
        self.subscriptions[subscription["id"]] = subscription
        if isinstance(key, str):
            self._idempotency[key] = subscription["id"]
        return JSONResponse({"subscription": subscription})

    def notify(
        self, event_type: str, data_type: str, object_id: str, obj: dict[str, Any]
    ) -> list[WebhookDelivery]:
        """Queue (and return) the signed deliveries of one event to its subscribers."""
        event = {
            "merchant_id": self.merchant_id,
            "type": event_type,
            "event_id": str(uuid.uuid4()),
            "created_at": _now(),
            "data": {"type": data_type, "id": object_id, "object": {data_type: obj}},
        }
        body = json.dumps(event).encode()
        deliveries = []
        for subscription in self.subscriptions.values():
            if not subscription["enabled"] or event_type not in subscription["event_types"]:
                continue
            url = subscription["notification_url"]
            headers = {
                "content-type": "application/json",
                "square-environment": "Sandbox",
                "square-initial-delivery-timestamp": event["created_at"],
                "square-retry-number": "0",
                "x-square-hmacsha256-signature": square_signature(
                    subscription["signature_key"], url, body
                ),
            }
            deliveries.append(WebhookDelivery(event=event, body=body, headers=headers, url=url))
        self.outbox.extend(deliveries)
        return deliveries


def _error(status: int, code: str, detail: str, category: str) -> JSONResponse:
    return JSONResponse(
        {"errors": [{"category": category, "code": code, "detail": detail}]}, status_code=status
    )


def _missing(field: str) -> JSONResponse:
    return JSONResponse(
        {
            "errors": [
                {
                    "category": "INVALID_REQUEST_ERROR",
                    "code": "MISSING_REQUIRED_PARAMETER",
                    "detail": f"Field must be set: {field}",
                    "field": field,
                }
            ]
        },
        status_code=400,
    )


def _listed(subscription: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in subscription.items() if k != "signature_key"}
