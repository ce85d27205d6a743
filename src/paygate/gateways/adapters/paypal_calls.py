"""The PayPal REST calls behind PayPalAdapter (orders, captures, refunds) and the OAuth
access token they carry, cached per process and per credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx

from paygate.gateways.adapters.base import AdapterConfig, PaymentRequest, PaymentResult
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import (
    call_gateway,
    http_client,
    json_object,
    record_response,
)
from paygate.gateways.adapters.paypal_answers import (
    _decline_for,
    _issue,
    _order_result,
    _paypal_code,
    _refusal,
    _summarize,
    _to_value,
)
from paygate.gateways.adapters.paypal_spec import SPEC

T = TypeVar("T")


TOKEN_PATH = "/v1/oauth2/token"


ORDERS_PATH = "/v2/checkout/orders"


# Refresh a cached token this long before PayPal says it expires (at most 10% of its life).
_TOKEN_MARGIN_SECONDS = 300.0


# --- the OAuth token cache ----------------------------------------------------------


@dataclass(frozen=True)
class _CachedToken:
    access_token: str
    expires_at: float  # time.monotonic()


_TokenKey = tuple[str, str, str]
# A random key per process: the cache key never holds a plain hash of a secret.
_KEY_SALT = secrets.token_bytes(32)
_tokens: dict[_TokenKey, _CachedToken] = {}
# asyncio locks belong to one event loop: one set of locks per loop.
_locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[_TokenKey, asyncio.Lock]] = (
    weakref.WeakKeyDictionary()
)


def _token_key(config: AdapterConfig) -> _TokenKey:
    secret = config.value("client_secret").encode()
    digest = hmac.new(_KEY_SALT, secret, hashlib.sha256).hexdigest()
    return (config.api_base_url(SPEC), config.value("client_id"), digest)


def _token_lock(key: _TokenKey) -> asyncio.Lock:
    per_loop = _locks.setdefault(asyncio.get_running_loop(), {})
    lock = per_loop.get(key)
    if lock is None:
        lock = per_loop[key] = asyncio.Lock()
    return lock


def _remember_token(key: _TokenKey, body: Mapping[str, Any]) -> str:
    token = str(body["access_token"])
    expires_in = body.get("expires_in")
    now = time.monotonic()
    for stale in [k for k, cached in _tokens.items() if cached.expires_at <= now]:
        _tokens.pop(stale, None)
    if isinstance(expires_in, int) and expires_in > 0:
        margin = min(_TOKEN_MARGIN_SECONDS, expires_in / 10)
        _tokens[key] = _CachedToken(token, now + expires_in - margin)
    return token


def _cached_token(key: _TokenKey) -> str | None:
    cached = _tokens.get(key)
    if cached is None or cached.expires_at <= time.monotonic():
        return None
    return cached.access_token


def clear_token_cache() -> None:
    """Forget every cached token (tests; a rotated secret never needs it: the key changes)."""
    _tokens.clear()


class _NotCapturable(GatewayRejected):
    """The capture was refused because of the order's state (not approved, already captured)."""


class _TokenRejected(GatewayMisconfigured):
    """PayPal refused the bearer token of a REST call (expired or revoked): fetch a new one."""


class PayPalCalls:
    """The PayPal REST calls behind PayPalAdapter's methods, each one through call_gateway."""

    config: AdapterConfig

    async def _create_order(
        self,
        request: PaymentRequest,
        interpret: Callable[[int, dict[str, Any]], PaymentResult],
        *,
        operation: str = "create_payment",
    ) -> PaymentResult:
        if not request.return_url:
            raise GatewayRejected(
                "PayPal needs a return URL to send the customer back to.",
                gateway_code="MISSING_RETURN_URL",
            )
        body = {
            "intent": "CAPTURE",
            "purchase_units": [
                {
                    "reference_id": request.reference,
                    "custom_id": request.reference,
                    **({"description": request.description[:127]} if request.description else {}),
                    "amount": {
                        "currency_code": request.currency,
                        "value": _to_value(request.amount, request.currency),
                    },
                }
            ],
            "payment_source": {
                "paypal": {
                    "experience_context": {
                        "return_url": request.return_url,
                        "cancel_url": request.cancel_url or request.return_url,
                        "user_action": "PAY_NOW",
                        "shipping_preference": "NO_SHIPPING",
                    }
                }
            },
        }
        summary = {
            "reference": request.reference,
            "idempotency_key": request.idempotency_key,
            "amount": request.amount,
            "currency": request.currency,
            "intent": "CAPTURE",
        }
        return await self._rest(
            operation,
            "POST",
            ORDERS_PATH,
            interpret,
            json=body,
            request_id=request.idempotency_key,
            summary=summary,
        )

    async def _get_order(self, order_id: str, operation: str) -> dict[str, Any]:
        def interpret(status: int, body: dict[str, Any]) -> dict[str, Any]:
            if status == 200:
                return body
            raise _refusal(status, body, f"order {order_id}")

        return await self._rest(
            operation,
            "GET",
            f"{ORDERS_PATH}/{order_id}",
            interpret,
            summary={"order_id": order_id},
        )

    async def _capture(self, request: PaymentRequest, order_id: str) -> PaymentResult:
        """Capture an approved order. Raises GatewayDeclined when the payer's funding fails
        and _NotCapturable when the order is not approved or already captured."""

        def interpret(status: int, body: dict[str, Any]) -> PaymentResult:
            if status in (200, 201):
                return _order_result(body)
            issue = _issue(body)
            decline = _decline_for(body)
            if status == 422 and decline is not None:
                raise GatewayDeclined(
                    decline.message,
                    decline_code=decline.code.value,
                    hard=decline.hard,
                    gateway_code=decline.gateway_code,
                )
            if status == 422 and issue in ("ORDER_NOT_APPROVED", "ORDER_ALREADY_CAPTURED"):
                raise _NotCapturable(
                    f"PayPal did not capture the order: {issue}.", gateway_code=issue
                )
            raise _refusal(status, body, f"the capture of order {order_id}")

        return await self._rest(
            "complete_payment",
            "POST",
            f"{ORDERS_PATH}/{order_id}/capture",
            interpret,
            json={},
            request_id=f"{request.idempotency_key}-capture",
            summary={"order_id": order_id, "reference": request.reference},
        )

    async def _rest(
        self,
        operation: str,
        method: str,
        path: str,
        interpret: Callable[[int, dict[str, Any]], T],
        *,
        json: Any = None,
        request_id: str | None = None,
        summary: Mapping[str, Any],
    ) -> T:
        """One authenticated REST call, recorded; a refused token is replaced once."""
        for attempt in (1, 2):
            token = await self._access_token(fresh=attempt == 2)

            async def send(token: str = token) -> T:
                headers = {
                    "Authorization": f"Bearer {token}",
                    "Accept": "application/json",
                    "Prefer": "return=representation",
                }
                if request_id is not None:
                    headers["PayPal-Request-Id"] = request_id
                async with http_client(self.config, base_url=self.config.api_base_url(SPEC)) as c:
                    response = await c.request(method, path, json=json, headers=headers)
                body = json_object(response)
                status = response.status_code
                record_response(status, _summarize(body))
                if status == 401:
                    raise _TokenRejected(
                        "PayPal refused the access token for this API call.",
                        gateway_code=_paypal_code(body),
                    )
                if status == 403:
                    raise GatewayMisconfigured(
                        "PayPal refused the call: the REST app lacks the permission for it "
                        "(NOT_AUTHORIZED).",
                        gateway_code=_paypal_code(body),
                    )
                if status == 429 or status >= 500:
                    # PayPal does not act on a rate-limited request.
                    raise GatewayUnavailable(
                        f"PayPal answered with HTTP {status}.",
                        gateway_code=_paypal_code(body),
                        refused=status == 429,
                    )
                if status == 404 and not body:
                    raise GatewayMisconfigured(
                        f"The PayPal API base URL did not answer like PayPal (HTTP {status})."
                    )
                return interpret(status, body)

            try:
                return await call_gateway(self.config, operation, send, request_summary=summary)
            except _TokenRejected:
                _tokens.pop(_token_key(self.config), None)
                if attempt == 2:
                    raise GatewayMisconfigured(
                        "PayPal refused a freshly issued access token.",
                        gateway_code="AUTHENTICATION_FAILURE",
                    ) from None
        raise AssertionError("unreachable")

    async def _access_token(self, *, fresh: bool = False) -> str:
        key = _token_key(self.config)
        async with _token_lock(key):
            if not fresh and (cached := _cached_token(key)) is not None:
                return cached

            async def send() -> str:
                body = await self._fetch_token()
                record_response(
                    200,
                    {"token_type": body.get("token_type"), "expires_in": body.get("expires_in")},
                )
                return _remember_token(key, body)

            try:
                return await call_gateway(
                    self.config,
                    "oauth_token",
                    send,
                    request_summary={"grant_type": "client_credentials"},
                )
            except GatewayTimeout as exc:
                # Only the token request timed out: the payment call was never sent.
                raise GatewayTimeout(exc.message, request_sent=False) from None
            except GatewayUnavailable as exc:
                # A 5xx or a broken connection on the token request: the payment call was
                # never sent either, so its outcome is known (nothing happened).
                raise GatewayUnavailable(
                    exc.message,
                    request_sent=False,
                    gateway_code=exc.gateway_code,
                    network=exc.network,
                ) from None

    async def _fetch_token(self) -> dict[str, Any]:
        """Exchange the client id and secret for an access token (client credentials grant)."""
        base = self.config.api_base_url(SPEC)
        async with http_client(self.config, base_url=base) as client:
            response = await client.post(
                TOKEN_PATH,
                auth=httpx.BasicAuth(
                    self.config.value("client_id"), self.config.value("client_secret")
                ),
                data={"grant_type": "client_credentials"},
                headers={"Accept": "application/json"},
            )
        body = json_object(response)
        status = response.status_code
        if status == 200 and isinstance(body.get("access_token"), str):
            return body
        error = body.get("error") if isinstance(body.get("error"), str) else None
        if status == 401 or error == "invalid_client":
            raise GatewayMisconfigured(
                "PayPal rejected the client id or secret.", gateway_code=error or "invalid_client"
            )
        if status == 429 or status >= 500:
            raise GatewayUnavailable(
                f"PayPal answered with HTTP {status}.", gateway_code=_paypal_code(body)
            )
        if status in (200, 404, 405):
            # Not PayPal's token endpoint: most likely a wrong API base URL.
            raise GatewayMisconfigured(
                f"{base}{TOKEN_PATH} did not answer like PayPal's token endpoint "
                f"(HTTP {status}): check the API base URL."
            )
        raise GatewayRejected(
            f"PayPal refused the token request (HTTP {status}).", gateway_code=_paypal_code(body)
        )
