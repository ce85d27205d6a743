"""PayPal, over its documented REST API with httpx (the official SDK is synchronous).

Payments use Orders v2 with intent CAPTURE, always hosted (PayPal has no card token to
charge from paygate's server):

- create_payment: POST /v2/checkout/orders with `payment_source.paypal.experience_context`
  (return_url, cancel_url, user_action PAY_NOW). PayPal answers PAYER_ACTION_REQUIRED and a
  `payer-action` link: the customer is sent there. `gateway_reference` is the ORDER id, for
  the life of the payment (PayPal sends the customer back with `?token=<order id>&PayerID=..`).
- complete_payment: POST /v2/checkout/orders/{id}/capture. The capture's own amount is
  reported. A customer back without approving (cancel_url) is CANCELED.
- fetch_payment: GET /v2/checkout/orders/{id}; without a reference, the create is re-issued
  with the same PayPal-Request-Id, and PayPal answers the order the first call made.
- refund_payment: the capture id is read from the order (GET /v2/checkout/orders/{id}), then
  POST /v2/payments/captures/{capture id}/refund.
- fetch_refund: GET /v2/payments/refunds/{id}; without a reference, the order's refund
  whose custom_id is paygate's refund id, else the refund re-issued with the same
  PayPal-Request-Id (PayPal answers the refund the first call made).

Every POST carries `PayPal-Request-Id` (PayPal's idempotency key): the attempt's key for the
create, `<key>-capture` for the capture, the refund's key for a refund.

The OAuth token (client credentials) is cached in this process until shortly before it
expires, keyed by (API base URL, client id, keyed hash of the secret): a configuration only
ever gets a token issued for its own credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any, ClassVar, TypeVar

import httpx

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Decline,
    DeclineCode,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
    GatewayTypeSpec,
    NextAction,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import call_gateway, http_client, record_response
from paygate.kit.money import exponent

T = TypeVar("T")

TOKEN_PATH = "/v1/oauth2/token"

SPEC = GatewayTypeSpec(
    type=GatewayType.PAYPAL,
    display_name="PayPal",
    description="PayPal checkout through a PayPal REST API app.",
    payment_method_types=("paypal",),
    fields=(
        FieldSpec(
            name="client_id",
            label="Client ID",
            help=(
                "In the PayPal Developer Dashboard, open Apps & Credentials, pick Sandbox or "
                "Live to match this gateway's environment, open your REST API app and copy "
                "its Client ID."
            ),
        ),
        FieldSpec(
            name="client_secret",
            label="Client secret",
            kind=FieldKind.SECRET,
            help="On the same app page, under Secret key: the app's client secret.",
        ),
        FieldSpec(
            name="webhook_id",
            label="Webhook ID",
            required=False,
            help=(
                "On the app page, under Webhooks, copy the Webhook ID PayPal lists for the "
                "webhook that points at paygate. Optional: needed only to verify webhooks."
            ),
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://api-m.sandbox.paypal.com (test) or "
                "https://api-m.paypal.com (live)."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: "https://api-m.sandbox.paypal.com",
        Environment.LIVE: "https://api-m.paypal.com",
    },
)

ORDERS_PATH = "/v2/checkout/orders"

# PayPal takes these currencies without decimals (TWD has two in ISO 4217).
_NO_DECIMALS = frozenset({"HUF", "JPY", "TWD"})

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


# --- the adapter --------------------------------------------------------------------


class PayPalAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        async def send() -> ConnectionCheck:
            token = await self._fetch_token()
            _remember_token(_token_key(self.config), token)
            expires_in = token.get("expires_in")
            lifetime = f" (expires in {expires_in} s)" if isinstance(expires_in, int) else ""
            return ConnectionCheck(message=f"Connected to PayPal: OAuth token obtained{lifetime}.")

        return await call_gateway(self.config, "test_connection", send)

    # --- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        def interpret(status: int, body: dict[str, Any]) -> PaymentResult:
            if status in (200, 201):
                return _order_result(body)
            decline = _decline_for(body)
            if status == 422 and decline is not None:
                raise GatewayDeclined(
                    decline.message,
                    decline_code=decline.code.value,
                    hard=decline.hard,
                    gateway_code=decline.gateway_code,
                )
            raise _refusal(status, body, "the order")

        return await self._create_order(request, interpret)

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        # An order with intent CAPTURE moves no money until paygate captures it, and paygate
        # never captures a payment it has canceled: reading the order is all it takes.
        result = await self.fetch_payment(request, gateway_reference)
        if result.status in (GatewayPaymentStatus.REQUIRES_ACTION, GatewayPaymentStatus.PROCESSING):
            return replace(result, status=GatewayPaymentStatus.CANCELED, next_action=None)
        return result

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        order_id = gateway_reference
        token = return_params.get("token")
        if token is not None and token != order_id:
            raise GatewayRejected(
                "The customer came back from PayPal for another order than this payment's.",
                gateway_code="ORDER_MISMATCH",
            )
        if not return_params.get("PayerID"):
            # Back through cancel_url, or without PayPal's parameters: ask PayPal.
            order = await self._get_order(order_id, "complete_payment")
            if order.get("status") != "APPROVED":
                return _order_result(order, customer_returned=True)
        try:
            return await self._capture(request, order_id)
        except GatewayDeclined as declined:
            # The payer's funding failed: the order (still APPROVED) says the amount.
            current = _order_result(await self._get_order(order_id, "complete_payment"))
            decline = Decline(
                code=DeclineCode(declined.decline_code),
                message=declined.message,
                hard=declined.hard,
                gateway_code=declined.gateway_code,
            )
            return replace(
                current,
                status=GatewayPaymentStatus.FAILED,
                decline=decline,
                next_action=None,
                raw_status=declined.gateway_code or current.raw_status,
            )
        except _NotCapturable as refused:
            # Not approved (the payer did not pay) or already captured: the order decides.
            latest = await self._get_order(order_id, "complete_payment")
            return _order_result(
                latest, customer_returned=refused.gateway_code == "ORDER_NOT_APPROVED"
            )

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        if gateway_reference is None:
            # The create timed out: the same PayPal-Request-Id answers the order it made
            # (in its latest state) instead of making another.
            def interpret(status: int, body: dict[str, Any]) -> PaymentResult:
                if status in (200, 201):
                    return _order_result(body)
                raise _refusal(status, body, "the order")

            return await self._create_order(request, interpret, operation="fetch_payment")
        return _order_result(await self._get_order(gateway_reference, "fetch_payment"))

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        order = await self._get_order(request.gateway_payment_reference, "refund_lookup")
        capture = _refundable_capture(order)
        if capture is None:
            raise GatewayRejected(
                "This PayPal order has no completed capture to refund.",
                gateway_code=str(order.get("status") or "") or None,
            )
        return await self._refund_capture(request, capture, "refund_payment")

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        if gateway_reference:

            def interpret(status: int, body: dict[str, Any]) -> RefundResult:
                if status != 200:
                    raise _refusal(status, body, f"refund {gateway_reference}")
                return _refund_result(body)

            return await self._rest(
                "fetch_refund",
                "GET",
                f"/v2/payments/refunds/{gateway_reference}",
                interpret,
                summary={"refund_id": gateway_reference, "reference": request.reference},
            )
        # The refund call's outcome is unknown: the order lists its refunds (a read) ...
        order = await self._get_order(request.gateway_payment_reference, "refund_lookup")
        for refund in _refunds(order):
            if refund.get("custom_id") == request.reference and refund.get("id"):
                return _refund_result(refund)
        # ... and when none is paygate's, the same refund with the same PayPal-Request-Id
        # answers the refund the first call made, or makes it once.
        capture = _refundable_capture(order) or _last_capture(order)
        if capture is None:
            raise GatewayRejected(
                "This PayPal order has no capture to refund.",
                gateway_code=str(order.get("status") or "") or None,
            )
        return await self._refund_capture(request, capture, "fetch_refund")

    async def _refund_capture(
        self, request: RefundRequest, capture: Mapping[str, Any], operation: str
    ) -> RefundResult:
        capture_id = str(capture["id"])
        captured_currency = (capture.get("amount") or {}).get("currency_code")
        if captured_currency and captured_currency != request.currency:
            raise GatewayRejected(
                f"The payment was captured in {captured_currency}, not {request.currency}.",
                gateway_code="CURRENCY_MISMATCH",
            )
        # Built only from the request: the same refund always sends the same body.
        body: dict[str, Any] = {
            "amount": {
                "currency_code": request.currency,
                "value": _to_value(request.amount, request.currency),
            },
            "custom_id": request.reference,
        }
        if request.reason:
            body["note_to_payer"] = request.reason[:255]

        def interpret(status: int, answer: dict[str, Any]) -> RefundResult:
            if status not in (200, 201):
                raise _refusal(status, answer, "the refund")
            return _refund_result(answer)

        summary = {
            "reference": request.reference,
            "order_id": request.gateway_payment_reference,
            "capture_id": capture_id,
            "amount": request.amount,
            "currency": request.currency,
        }
        return await self._rest(
            operation,
            "POST",
            f"/v2/payments/captures/{capture_id}/refund",
            interpret,
            json=body,
            request_id=request.idempotency_key,
            summary=summary,
        )

    # --- the calls --------------------------------------------------------------------

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
                body = _json_object(response)
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
        body = _json_object(response)
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


# --- PayPal's bodies ----------------------------------------------------------------

# 422 issues that are the payer's funding failing, as paygate's decline codes.
_DECLINES: dict[str, tuple[DeclineCode, bool, str]] = {
    "INSTRUMENT_DECLINED": (
        DeclineCode.CARD_DECLINED,
        False,
        "PayPal declined the payment method. Please choose another way to pay.",
    ),
    "REDIRECT_PAYER_FOR_ALTERNATE_FUNDING": (
        DeclineCode.CARD_DECLINED,
        False,
        "PayPal declined the payment method. Please choose another way to pay.",
    ),
    "CARD_EXPIRED": (DeclineCode.EXPIRED_CARD, True, "The card used in PayPal has expired."),
    "PAYER_CANNOT_PAY": (DeclineCode.CARD_DECLINED, True, "PayPal cannot take this payment."),
    "TRANSACTION_REFUSED": (DeclineCode.CARD_DECLINED, True, "PayPal refused the payment."),
    "PAYER_ACCOUNT_RESTRICTED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The payer's PayPal account is restricted.",
    ),
    "PAYER_ACCOUNT_LOCKED_OR_CLOSED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The payer's PayPal account is locked or closed.",
    ),
    "MAX_NUMBER_OF_PAYMENT_ATTEMPTS_EXCEEDED": (
        DeclineCode.CARD_DECLINED,
        True,
        "Too many payment attempts were made for this order.",
    ),
    "COMPLIANCE_VIOLATION": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "PayPal refused the payment for compliance reasons.",
    ),
    "TRANSACTION_BLOCKED_BY_PAYEE": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "The payment was blocked by the merchant's risk settings.",
    ),
}


def _decline_for(body: Mapping[str, Any]) -> Decline | None:
    issue = _issue(body)
    found = _DECLINES.get(issue or "")
    if found is None:
        return None
    code, hard, message = found
    return Decline(code=code, message=message, hard=hard, gateway_code=issue)


def _issue(body: Mapping[str, Any]) -> str | None:
    details = body.get("details")
    if isinstance(details, list):
        for detail in details:
            if isinstance(detail, dict) and isinstance(detail.get("issue"), str):
                return str(detail["issue"])
    return None


def _refusal(status: int, body: Mapping[str, Any], what: str) -> GatewayRejected:
    issue = _issue(body)
    name = _paypal_code(body)
    if status == 404:
        return GatewayRejected(f"PayPal does not know {what}.", gateway_code=name)
    said = f": {issue}" if issue else ""
    return GatewayRejected(
        f"PayPal refused {what} (HTTP {status}{said}).", gateway_code=issue or name
    )


def _purchase_unit(order: Mapping[str, Any]) -> dict[str, Any]:
    units = order.get("purchase_units")
    if isinstance(units, list) and units and isinstance(units[0], dict):
        return units[0]
    return {}


def _captures(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    payments = _purchase_unit(order).get("payments")
    captures = payments.get("captures") if isinstance(payments, dict) else None
    found: list[dict[str, Any]] = [c for c in captures or [] if isinstance(c, dict)]
    return found


_REFUNDABLE_CAPTURES = frozenset({"COMPLETED", "PARTIALLY_REFUNDED"})


def _refundable_capture(order: Mapping[str, Any]) -> dict[str, Any] | None:
    refundable = [
        c for c in _captures(order) if c.get("id") and c.get("status") in _REFUNDABLE_CAPTURES
    ]
    return refundable[-1] if refundable else None


def _last_capture(order: Mapping[str, Any]) -> dict[str, Any] | None:
    """The order's latest capture, whatever its state (a fully refunded one included)."""
    with_id = [c for c in _captures(order) if c.get("id")]
    return with_id[-1] if with_id else None


def _refunds(order: Mapping[str, Any]) -> list[dict[str, Any]]:
    payments = _purchase_unit(order).get("payments")
    refunds = payments.get("refunds") if isinstance(payments, dict) else None
    found: list[dict[str, Any]] = [r for r in refunds or [] if isinstance(r, dict)]
    return found


def _link(order: Mapping[str, Any], *rels: str) -> str | None:
    links = order.get("links")
    for rel in rels:
        for link in links if isinstance(links, list) else []:
            if isinstance(link, dict) and link.get("rel") == rel and link.get("href"):
                return str(link["href"])
    return None


def _order_result(order: Mapping[str, Any], customer_returned: bool = False) -> PaymentResult:
    """Map an order (and its latest capture) to the gateway-neutral result.

    `customer_returned`: the customer came back without approving (cancel_url), so an
    order still waiting for them is canceled rather than still requiring action.
    """
    order_id = str(order.get("id") or "")
    status = str(order.get("status") or "")
    captures = _captures(order)
    capture = captures[-1] if captures else None
    money = (capture or {}).get("amount") or _purchase_unit(order).get("amount")
    amount, currency = _from_money(money)
    raw = status
    next_action: NextAction | None = None
    decline: Decline | None = None
    if capture is not None:
        capture_status = str(capture.get("status") or "")
        raw = capture_status or status
        if capture_status in ("COMPLETED", "PARTIALLY_REFUNDED", "REFUNDED"):
            result_status = GatewayPaymentStatus.SUCCEEDED
        elif capture_status in ("DECLINED", "FAILED"):
            result_status = GatewayPaymentStatus.FAILED
            decline = Decline(
                code=DeclineCode.CARD_DECLINED,
                message="PayPal declined the payment. Please choose another way to pay.",
                hard=False,
                gateway_code=capture_status,
            )
        else:  # PENDING: PayPal holds the funds for review (status_details.reason)
            result_status = GatewayPaymentStatus.PROCESSING
    elif status in ("CREATED", "PAYER_ACTION_REQUIRED"):
        if customer_returned:
            result_status = GatewayPaymentStatus.CANCELED
            decline = Decline(
                code=DeclineCode.CUSTOMER_CANCELED,
                message="The payment was canceled at PayPal.",
                hard=False,
                gateway_code=status,
            )
        else:
            result_status = GatewayPaymentStatus.REQUIRES_ACTION
            url = _link(order, "payer-action", "approve")
            next_action = NextAction(type="redirect", redirect_url=url) if url else None
    elif status == "VOIDED":
        result_status = GatewayPaymentStatus.CANCELED
    elif status == "COMPLETED":
        # Completed without a capture in the body: treat as still settling, ask again.
        result_status = GatewayPaymentStatus.PROCESSING
    else:  # APPROVED (capture pending), SAVED
        result_status = GatewayPaymentStatus.PROCESSING
    return PaymentResult(
        gateway_reference=order_id,
        status=result_status,
        amount=amount,
        currency=currency,
        next_action=next_action,
        decline=decline,
        raw_status=raw,
    )


_REFUND_STATUSES = {
    "COMPLETED": GatewayRefundStatus.SUCCEEDED,
    "PENDING": GatewayRefundStatus.PENDING,
    "FAILED": GatewayRefundStatus.FAILED,
    "CANCELLED": GatewayRefundStatus.FAILED,
}


def _refund_result(refund: Mapping[str, Any]) -> RefundResult:
    amount, currency = _from_money(refund.get("amount"))
    raw = str(refund.get("status") or "")
    return RefundResult(
        gateway_reference=str(refund.get("id") or ""),
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _to_value(amount: int, currency: str) -> str:
    """Minor units as PayPal's decimal string (1050 USD -> "10.50", 1000 JPY -> "1000")."""
    value = Decimal(amount).scaleb(-exponent(currency))
    if currency in _NO_DECIMALS:
        if value != value.to_integral_value():
            raise GatewayRejected(
                f"PayPal takes {currency} amounts in whole units only.",
                gateway_code="DECIMALS_NOT_SUPPORTED",
            )
        value = value.quantize(Decimal(1))
    return f"{value:f}"


def _from_money(money: Any) -> tuple[int, str]:
    """PayPal's {currency_code, value} as (minor units, currency), exactly or not at all."""
    if not isinstance(money, dict):
        raise GatewayRejected("PayPal's answer did not say the amount.", gateway_code="NO_AMOUNT")
    currency = str(money.get("currency_code") or "")
    try:
        minor = Decimal(str(money.get("value"))).scaleb(exponent(currency))
    except (InvalidOperation, ValueError):
        minor = Decimal("NaN")
    if not currency or not minor.is_finite() or minor != minor.to_integral_value():
        raise GatewayRejected(
            "PayPal answered with an amount paygate cannot read.", gateway_code="BAD_AMOUNT"
        )
    return int(minor), currency


def _summarize(body: Mapping[str, Any]) -> dict[str, Any]:
    """The non-secret parts of a PayPal answer, for the gateway call log."""
    summary: dict[str, Any] = {}
    for key in ("id", "status", "intent", "name", "debug_id"):
        if isinstance(body.get(key), str):
            summary[key] = body[key]
    issue = _issue(body)
    if issue:
        summary["issue"] = issue
    if isinstance(body.get("amount"), dict):
        summary["amount"] = _money_summary(body["amount"])
    unit = _purchase_unit(body)
    if isinstance(unit.get("amount"), dict):
        summary["order_amount"] = _money_summary(unit["amount"])
    captures = _captures(body)
    if captures:
        summary["captures"] = [
            {
                "id": c.get("id"),
                "status": c.get("status"),
                "amount": _money_summary(c.get("amount")),
            }
            for c in captures
        ]
    return summary


def _money_summary(money: Any) -> dict[str, Any] | None:
    if not isinstance(money, dict):
        return None
    return {"value": money.get("value"), "currency_code": money.get("currency_code")}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _paypal_code(body: Mapping[str, Any]) -> str | None:
    # OAuth errors use "error"; the REST APIs use "name" (e.g. INTERNAL_SERVICE_ERROR).
    for key in ("error", "name"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None
