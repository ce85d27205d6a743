"""A PayPal REST API emulator, written from developer.paypal.com's reference.

Implemented now:
- POST /v1/oauth2/token: client credentials grant with HTTP basic auth
  (client_id:client_secret) and a form body `grant_type=client_credentials`.
  200 answers PayPal's body {scope, access_token, token_type "Bearer", app_id,
  expires_in, nonce}; bad or missing credentials answer 401
  {"error": "invalid_client", "error_description": "Client Authentication failed"};
  a missing or other grant type answers 400 `unsupported_grant_type`.

Orders v2 (intent CAPTURE) and Payments v2, every call with `Authorization: Bearer`
(a token this emulator issued and that has not expired, else 401 AUTHENTICATION_FAILURE):
- POST /v2/checkout/orders: with `payment_source.paypal.experience_context` the order is
  PAYER_ACTION_REQUIRED with a `payer-action` link, else CREATED with an `approve` link.
  Amounts are validated like PayPal does (DECIMAL_PRECISION, DECIMALS_NOT_SUPPORTED).
- GET /v2/checkout/orders/{id}; POST /v2/checkout/orders/{id}/capture (422
  ORDER_NOT_APPROVED before approval, ORDER_ALREADY_CAPTURED after the capture).
- GET /v2/payments/captures/{id}; POST /v2/payments/captures/{id}/refund (full when no
  amount; 422 REFUND_AMOUNT_EXCEEDED / CAPTURE_FULLY_REFUNDED); GET /v2/payments/refunds/{id}.
- The approve page: GET /checkoutnow?token=<order id> shows the order with "Pay with PayPal"
  and "Cancel" buttons. Paying marks the order APPROVED and redirects (303) to
  return_url?token=<id>&PayerID=<payer>; canceling redirects to cancel_url?token=<id>.

Idempotency: a POST with a `PayPal-Request-Id` already used by the same app answers the
latest state of what the first request made (200 instead of 201) and does nothing again;
the same id on another operation answers 422 PAYPAL_REQUEST_ID_PREVIOUSLY_USED. Errors are
not stored, so a declined capture can be retried.

Orders belong to the REST app (client id) that created them: another app gets 404.

Knobs besides the common ones (reset by `reset()`): `capture_decline` (an issue such as
"INSTRUMENT_DECLINED" answers 422 on capture; "DECLINED" completes the order with a DECLINED
capture), `capture_status` ("COMPLETED" or "PENDING"), `reported_amount` (the value the
capture reports, to test amount checks), `refund_status` ("COMPLETED" or "PENDING"),
`refund_completes_on_read` (a PENDING refund read with GET /v2/payments/refunds/{id} has
COMPLETED by then; `complete_refund` settles one directly),
`answer_delay_seconds` (handle the request, then answer late: a timeout after PayPal did
the work).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import html
import json
import re
import secrets
import string
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes.common import Emulator, WebhookDelivery
from tests.fakes.paypal_webhooks import PayPalWebhooks

DEFAULT_CLIENT_ID = "AQkquBDf1zctJOWGKWUEtKXm6qVhueUEMvXO_-MCI4DQQ4-LWvkDLIN2fGsd"
DEFAULT_CLIENT_SECRET = "EL1tVxAjhT7cJimnz5-Nsx9k2reTKSVfErNQF-CmrwJgxRtylkGTKlU4RvrX"
DEFAULT_APP_ID = "APP-80W284485P519543T"
# PayPal's tokens live about nine hours.
DEFAULT_TOKEN_TTL_SECONDS = 32400

SCOPES = " ".join(
    (
        "https://uri.paypal.com/services/invoicing",
        "https://uri.paypal.com/services/vault/payment-tokens/read",
        "https://uri.paypal.com/services/disputes/read-buyer",
        "https://uri.paypal.com/services/payments/realtimepayment",
        "https://uri.paypal.com/services/payments/payment/authcapture",
        "https://uri.paypal.com/services/payments/refund",
        "https://uri.paypal.com/services/applications/webhooks",
        "openid",
    )
)

_INFO_LINK = "https://developer.paypal.com/api/rest/reference/orders/v2/errors/"
_ID_ALPHABET = string.ascii_uppercase + string.digits
# PayPal's amount value pattern.
_VALUE = re.compile(r"^((-?[0-9]+)|(-?([0-9]+)?[.][0-9]+))$")
# Currencies PayPal takes without decimals; the others take at most two.
NO_DECIMAL_CURRENCIES = frozenset({"HUF", "JPY", "TWD"})
UNPROCESSABLE = (
    "The requested action could not be performed, semantically incorrect, or failed "
    "business validation."
)
INVALID_REQUEST = "Request is not well-formed, syntactically incorrect, or violates schema."


def paypal_id(length: int = 17) -> str:
    """PayPal's resource ids: upper-case letters and digits (orders, captures, refunds)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


def _decimal(value: str) -> Decimal:
    return Decimal(value)


def _format(value: Decimal, currency: str) -> str:
    if currency in NO_DECIMAL_CURRENCIES:
        return f"{value.quantize(Decimal(1)):f}"
    return f"{value.quantize(Decimal('0.01')):f}"


@dataclass
class _OrderMeta:
    client_id: str
    return_url: str | None
    cancel_url: str | None
    payer_id: str | None = None


@dataclass(frozen=True)
class _Stored:
    """What a PayPal-Request-Id made: the operation and the resource to answer again."""

    operation: str
    kind: str  # "order" or "refund"
    resource_id: str


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    client_id: str
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


class PayPalEmulator(Emulator):
    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: str = DEFAULT_APP_ID,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_id = app_id
        self.token_ttl_seconds = token_ttl_seconds
        self._initial = (client_id, client_secret)
        # More REST apps (client id -> secret) a test may add besides the main one.
        self.apps: dict[str, str] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self._clear_state()
        self.answer_delay_seconds = 0.0
        self.webhooks = PayPalWebhooks(self)
        self.app: ASGIApp = self.wrap(
            _LateAnswer(
                Starlette(
                    routes=[
                        Route("/v1/oauth2/token", self._token, methods=["POST"]),
                        Route("/v2/checkout/orders", self._create_order, methods=["POST"]),
                        Route("/v2/checkout/orders/{order_id}", self._get_order, methods=["GET"]),
                        Route(
                            "/v2/checkout/orders/{order_id}/capture",
                            self._capture_order,
                            methods=["POST"],
                        ),
                        Route(
                            "/v2/payments/captures/{capture_id}", self._get_capture, methods=["GET"]
                        ),
                        Route(
                            "/v2/payments/captures/{capture_id}/refund",
                            self._refund_capture,
                            methods=["POST"],
                        ),
                        Route(
                            "/v2/payments/refunds/{refund_id}", self._get_refund, methods=["GET"]
                        ),
                        Route("/checkoutnow", self._approve_page, methods=["GET"]),
                        Route("/checkoutnow/approve", self._approve, methods=["POST"]),
                        Route("/checkoutnow/cancel", self._cancel, methods=["POST"]),
                        *self.webhooks.routes(),
                    ]
                ),
                self,
            )
        )

    def _clear_state(self) -> None:
        self.orders: dict[str, dict[str, Any]] = {}
        self.order_meta: dict[str, _OrderMeta] = {}
        # capture id -> order id
        self.captures: dict[str, str] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.request_ids: dict[tuple[str, str], _Stored] = {}
        self.capture_decline: str | None = None
        self.capture_status = "COMPLETED"
        self.reported_amount: str | None = None
        self.refund_status = "COMPLETED"
        # True: a PENDING refund read with GET /v2/payments/refunds/{id} is COMPLETED by then.
        self.refund_completes_on_read = False
        self.answer_delay_seconds = 0.0

    def reset(self) -> None:
        super().reset()
        self.client_id, self.client_secret = self._initial
        self.apps = {}
        self.tokens.clear()
        self._clear_state()
        self.webhooks.reset()

    # --- webhooks (tests/fakes/paypal_webhooks.py) -----------------------------------

    def capture_event(
        self, order_id: str, event_type: str = "PAYMENT.CAPTURE.COMPLETED"
    ) -> list[WebhookDelivery]:
        """The order's capture as PayPal's webhook resource shows it (with its order id)."""
        capture = self.capture_of(order_id)
        assert capture is not None, "the order has no capture"
        resource = {
            **capture,
            "supplementary_data": {"related_ids": {"order_id": order_id}},
        }
        return self.webhooks.notify(event_type, "capture", resource)

    def refund_event(self, refund_id: str) -> list[WebhookDelivery]:
        return self.webhooks.notify(
            "PAYMENT.CAPTURE.REFUNDED", "refund", dict(self.refunds[refund_id])
        )

    def dispute_event(
        self,
        order_id: str,
        status: str = "OPEN",
        *,
        outcome: str | None = None,
        dispute_id: str | None = None,
    ) -> list[WebhookDelivery]:
        """A dispute of the order's capture (status OPEN, or RESOLVED with an outcome)."""
        capture = self.capture_of(order_id)
        assert capture is not None, "the order has no capture"
        dispute: dict[str, Any] = {
            "dispute_id": dispute_id or "PP-D-" + paypal_id(5),
            "create_time": _now(),
            "update_time": _now(),
            "disputed_transactions": [
                {
                    "seller_transaction_id": capture["id"],
                    "custom": capture.get("custom_id"),
                    "gross_amount": capture["amount"],
                }
            ],
            "reason": "MERCHANDISE_OR_SERVICE_NOT_RECEIVED",
            "status": status,
            "dispute_amount": capture["amount"],
        }
        if outcome:
            dispute["dispute_outcome"] = {"outcome_code": outcome}
        kind = {"OPEN": "CUSTOMER.DISPUTE.CREATED", "RESOLVED": "CUSTOMER.DISPUTE.RESOLVED"}
        return self.webhooks.notify(
            kind.get(status, "CUSTOMER.DISPUTE.UPDATED"), "dispute", dispute
        )

    # --- what tests look at ---------------------------------------------------------

    def orders_for(self, reference: str) -> list[dict[str, Any]]:
        """The orders whose purchase unit carries paygate's reference."""
        return [
            order
            for order in self.orders.values()
            if order["purchase_units"][0].get("reference_id") == reference
        ]

    def capture_of(self, order_id: str) -> dict[str, Any] | None:
        captures = self.orders[order_id]["purchase_units"][0].get("payments", {}).get("captures")
        return captures[-1] if captures else None

    def approve(self, order_id: str) -> str:
        """Approve an order as the payer would on the approve page; returns the PayerID."""
        order = self.orders[order_id]
        meta = self.order_meta[order_id]
        meta.payer_id = meta.payer_id or paypal_id(13)
        order["status"] = "APPROVED"
        order["payer"] = {
            "name": {"given_name": "John", "surname": "Doe"},
            "email_address": "sb-buyer@personal.example.com",
            "payer_id": meta.payer_id,
            "address": {"country_code": "US"},
        }
        order["payment_source"] = {
            "paypal": {
                "email_address": "sb-buyer@personal.example.com",
                "account_id": meta.payer_id,
                "account_status": "VERIFIED",
                "name": {"given_name": "John", "surname": "Doe"},
                "address": {"country_code": "US"},
            }
        }
        order["update_time"] = _now()
        order["links"] = [
            link for link in order["links"] if link["rel"] not in ("payer-action", "approve")
        ] + [
            {
                "href": f"{self.base_url}/v2/checkout/orders/{order_id}/capture",
                "rel": "capture",
                "method": "POST",
            }
        ]
        return meta.payer_id

    def server_error_body(self, status: int) -> dict[str, Any]:
        if status == 503:
            return self.rest_error("SERVICE_UNAVAILABLE", "Service Unavailable.")
        return self.rest_error("INTERNAL_SERVER_ERROR", "An internal server error occurred.")

    # --- OAuth ----------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        client_id = self._basic_auth_client(request)
        if client_id is None:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status_code=401,
            )
        form = await request.form()
        grant_type = form.get("grant_type")
        if not grant_type:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"},
                status_code=400,
            )
        if grant_type != "client_credentials":
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Grant Type {grant_type} is not supported",
                },
                status_code=400,
            )
        token = IssuedToken(
            access_token=f"A21AA{secrets.token_urlsafe(60)}",
            client_id=client_id,
            expires_at=time.time() + self.token_ttl_seconds,
        )
        self.tokens[token.access_token] = token
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return JSONResponse(
            {
                "scope": SCOPES,
                "access_token": token.access_token,
                "token_type": "Bearer",
                "app_id": self.app_id,
                "expires_in": self.token_ttl_seconds,
                "nonce": f"{now}{secrets.token_urlsafe(32)}",
            }
        )

    def _basic_auth_client(self, request: Request) -> str | None:
        """The client id of valid basic credentials, else None."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        # Read live, so a test can rotate the secret by assigning client_secret.
        known = {**self.apps, self.client_id: self.client_secret}
        expected = known.get(client_id)
        if not sep or expected is None or not secrets.compare_digest(expected, secret):
            return None
        return client_id

    # --- helpers for the REST routes ------------------------------------------------

    def authenticate(self, request: Request) -> IssuedToken | Response:
        """The token of a REST call, or PayPal's 401 answer."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self.tokens.get(value) if scheme.lower() == "bearer" else None
        if token is None or token.expired:
            body = self.rest_error(
                "AUTHENTICATION_FAILURE",
                "Authentication failed due to invalid authentication credentials or a "
                "missing Authorization header.",
                links=[
                    {
                        "href": "https://developer.paypal.com/docs/api/overview/#error",
                        "rel": "information_link",
                    }
                ],
            )
            return JSONResponse(body, status_code=401)
        return token

    def rest_error(
        self,
        name: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        links: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """PayPal's REST error body."""
        body: dict[str, Any] = {
            "name": name,
            "message": message,
            "debug_id": secrets.token_hex(7)[:13],
        }
        if details:
            body["details"] = details
        body["links"] = links or [
            {"href": f"{_INFO_LINK}#{name}", "rel": "information_link", "method": "GET"}
        ]
        return body

    def _issue(
        self, status: int, name: str, message: str, issue: str, description: str, **extra: Any
    ) -> JSONResponse:
        detail: dict[str, Any] = {"issue": issue, "description": description, **extra}
        links = [{"href": f"{_INFO_LINK}#{issue}", "rel": "information_link", "method": "GET"}]
        return JSONResponse(
            self.rest_error(name, message, details=[detail], links=links), status_code=status
        )

    def _unprocessable(self, issue: str, description: str) -> JSONResponse:
        return self._issue(422, "UNPROCESSABLE_ENTITY", UNPROCESSABLE, issue, description)

    def _invalid(self, issue: str, description: str, field: str) -> JSONResponse:
        return self._issue(
            400,
            "INVALID_REQUEST",
            INVALID_REQUEST,
            issue,
            description,
            field=field,
            location="body",
        )

    def _not_found(self, what: str) -> JSONResponse:
        return self._issue(
            404,
            "RESOURCE_NOT_FOUND",
            "The specified resource does not exist.",
            "INVALID_RESOURCE_ID",
            f"Specified resource ID does not exist. Please check the resource ID ({what}) "
            "and try again.",
        )

    async def _json_body(self, request: Request) -> dict[str, Any] | JSONResponse:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return self._invalid(
                "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.", "/"
            )
        if not isinstance(body, dict):
            return self._invalid(
                "MALFORMED_REQUEST_JSON", "The request JSON is not well formed.", "/"
            )
        return body

    def _replay(self, token: IssuedToken, request: Request, operation: str) -> Response | None:
        """The answer to a PayPal-Request-Id already used by this app, else None."""
        request_id = request.headers.get("paypal-request-id")
        if not request_id:
            return None
        stored = self.request_ids.get((token.client_id, request_id))
        if stored is None:
            return None
        if stored.operation != operation:
            return self._unprocessable(
                "PAYPAL_REQUEST_ID_PREVIOUSLY_USED",
                "The PayPal-Request-Id has already been used for another request.",
            )
        if stored.kind == "order":
            return JSONResponse(self.orders[stored.resource_id], status_code=200)
        return JSONResponse(self.refunds[stored.resource_id], status_code=200)

    def _store(self, token: IssuedToken, request: Request, stored: _Stored) -> None:
        request_id = request.headers.get("paypal-request-id")
        if request_id:
            self.request_ids[(token.client_id, request_id)] = stored

    def _money_error(self, money: Any, field: str) -> JSONResponse | None:
        if not isinstance(money, dict):
            return self._invalid(
                "MISSING_REQUIRED_PARAMETER", "A required field is missing.", field
            )
        currency, value = money.get("currency_code"), money.get("value")
        if not isinstance(currency, str) or not re.fullmatch(r"[A-Z]{3}", currency):
            return self._invalid(
                "INVALID_PARAMETER_VALUE",
                "The value of a field is invalid.",
                f"{field}/currency_code",
            )
        if not isinstance(value, str) or not _VALUE.match(value):
            return self._invalid(
                "INVALID_PARAMETER_SYNTAX",
                "The value of a field does not conform to the expected format.",
                f"{field}/value",
            )
        decimals = len(value.partition(".")[2])
        if currency in NO_DECIMAL_CURRENCIES and decimals:
            return self._unprocessable(
                "DECIMALS_NOT_SUPPORTED", "Currency code does not support decimals."
            )
        if decimals > 2:
            return self._unprocessable(
                "DECIMAL_PRECISION",
                "If the currency supports decimals, only two decimal place precision is supported.",
            )
        if _decimal(value) <= 0:
            return self._invalid(
                "CANNOT_BE_ZERO_OR_NEGATIVE", "Must be greater than zero.", f"{field}/value"
            )
        return None

    def _owned_order(self, token: IssuedToken, order_id: str) -> dict[str, Any] | None:
        meta = self.order_meta.get(order_id)
        if meta is None or meta.client_id != token.client_id:
            return None
        return self.orders[order_id]

    # --- orders ---------------------------------------------------------------------

    async def _create_order(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        if (replayed := self._replay(token, request, "orders.create")) is not None:
            return replayed
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        intent = body.get("intent")
        if intent not in ("CAPTURE", "AUTHORIZE"):
            return self._invalid(
                "INVALID_PARAMETER_VALUE", "The value of a field is invalid.", "/intent"
            )
        units = body.get("purchase_units")
        if not isinstance(units, list) or not units or not isinstance(units[0], dict):
            return self._invalid(
                "MISSING_REQUIRED_PARAMETER", "A required field is missing.", "/purchase_units"
            )
        unit = units[0]
        if (
            error := self._money_error(
                unit.get("amount"), "/purchase_units/@reference_id=='default'/amount"
            )
        ) is not None:
            return error
        context = (
            ((body.get("payment_source") or {}).get("paypal") or {}).get("experience_context")
        ) or {}
        order_id = paypal_id()
        base = str(request.base_url).rstrip("/")
        hosted = bool(((body.get("payment_source") or {}).get("paypal")) is not None)
        action_rel = "payer-action" if hosted else "approve"
        order: dict[str, Any] = {
            "id": order_id,
            "intent": intent,
            "status": "PAYER_ACTION_REQUIRED" if hosted else "CREATED",
            "purchase_units": [
                {
                    "reference_id": unit.get("reference_id") or "default",
                    **{k: unit[k] for k in ("custom_id", "invoice_id", "description") if k in unit},
                    "amount": {
                        "currency_code": unit["amount"]["currency_code"],
                        "value": unit["amount"]["value"],
                    },
                    "payee": {
                        "email_address": "sb-merchant@business.example.com",
                        "merchant_id": "7KNGBPH2U58GQ",
                    },
                }
            ],
            "create_time": _now(),
            "links": [
                {"href": f"{base}/v2/checkout/orders/{order_id}", "rel": "self", "method": "GET"},
                {
                    "href": f"{base}/checkoutnow?token={order_id}",
                    "rel": action_rel,
                    "method": "GET",
                },
            ],
        }
        if hosted:
            order["payment_source"] = {"paypal": {}}
        self.orders[order_id] = order
        self.order_meta[order_id] = _OrderMeta(
            client_id=token.client_id,
            return_url=context.get("return_url"),
            cancel_url=context.get("cancel_url"),
        )
        self._store(token, request, _Stored("orders.create", "order", order_id))
        return JSONResponse(order, status_code=201)

    async def _get_order(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        order = self._owned_order(token, request.path_params["order_id"])
        if order is None:
            return self._not_found(request.path_params["order_id"])
        return JSONResponse(order)

    async def _capture_order(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        order_id = request.path_params["order_id"]
        order = self._owned_order(token, order_id)
        if order is None:
            return self._not_found(order_id)
        operation = f"orders.capture:{order_id}"
        if (replayed := self._replay(token, request, operation)) is not None:
            return replayed
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        if order["status"] == "COMPLETED":
            return self._unprocessable(
                "ORDER_ALREADY_CAPTURED",
                "Order already captured. If 'intent=CAPTURE' only one capture per order is "
                "allowed.",
            )
        if order["status"] != "APPROVED":
            return self._unprocessable(
                "ORDER_NOT_APPROVED",
                "Payer has not yet approved the Order for payment. Please redirect the payer "
                "to the 'rel':'approve' url returned as part of the HATEOAS links within the "
                "Create Order call or provide a valid payment_source in the request.",
            )
        if self.capture_decline is not None and self.capture_decline != "DECLINED":
            return self._unprocessable(
                self.capture_decline,
                "The instrument presented  was either declined by the processor or bank, or it "
                "can't be used for this payment.",
            )
        unit = order["purchase_units"][0]
        amount = dict(unit["amount"])
        if self.reported_amount is not None:
            amount["value"] = self.reported_amount
        status = "DECLINED" if self.capture_decline == "DECLINED" else self.capture_status
        capture_id = paypal_id()
        base = str(request.base_url).rstrip("/")
        currency = amount["currency_code"]
        gross = _decimal(amount["value"])
        fee = (gross * Decimal("0.0349") + Decimal("0.49")).quantize(Decimal("0.01"))
        if currency in NO_DECIMAL_CURRENCIES:
            fee = fee.quantize(Decimal(1))
        capture: dict[str, Any] = {
            "id": capture_id,
            "status": status,
            "amount": amount,
            "final_capture": True,
            "seller_protection": {
                "status": "ELIGIBLE",
                "dispute_categories": ["ITEM_NOT_RECEIVED", "UNAUTHORIZED_TRANSACTION"],
            },
            "links": [
                {
                    "href": f"{base}/v2/payments/captures/{capture_id}",
                    "rel": "self",
                    "method": "GET",
                },
                {
                    "href": f"{base}/v2/payments/captures/{capture_id}/refund",
                    "rel": "refund",
                    "method": "POST",
                },
                {"href": f"{base}/v2/checkout/orders/{order_id}", "rel": "up", "method": "GET"},
            ],
            "create_time": _now(),
            "update_time": _now(),
        }
        if "custom_id" in unit:
            capture["custom_id"] = unit["custom_id"]
        if status == "COMPLETED":
            capture["seller_receivable_breakdown"] = {
                "gross_amount": amount,
                "paypal_fee": {"currency_code": currency, "value": _format(fee, currency)},
                "net_amount": {"currency_code": currency, "value": _format(gross - fee, currency)},
            }
        elif status == "PENDING":
            capture["status_details"] = {"reason": "PENDING_REVIEW"}
        elif status == "DECLINED":
            capture["processor_response"] = {
                "avs_code": "Y",
                "cvv_code": "M",
                "response_code": "5120",
            }
        unit["payments"] = {"captures": [capture]}
        order["status"] = "COMPLETED"
        order["update_time"] = _now()
        order["links"] = [link for link in order["links"] if link["rel"] == "self"]
        self.captures[capture_id] = order_id
        self._store(token, request, _Stored(operation, "order", order_id))
        return JSONResponse(order, status_code=201)

    # --- captures and refunds -------------------------------------------------------

    def _owned_capture(self, token: IssuedToken, capture_id: str) -> dict[str, Any] | None:
        order_id = self.captures.get(capture_id)
        if order_id is None or self._owned_order(token, order_id) is None:
            return None
        return self.capture_of(order_id)

    async def _get_capture(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        capture = self._owned_capture(token, request.path_params["capture_id"])
        if capture is None:
            return self._not_found(request.path_params["capture_id"])
        return JSONResponse(capture)

    async def _refund_capture(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        capture_id = request.path_params["capture_id"]
        capture = self._owned_capture(token, capture_id)
        if capture is None:
            return self._not_found(capture_id)
        operation = f"captures.refund:{capture_id}"
        if (replayed := self._replay(token, request, operation)) is not None:
            return replayed
        body = await self._json_body(request)
        if isinstance(body, Response):
            return body
        currency = capture["amount"]["currency_code"]
        captured = _decimal(capture["amount"]["value"])
        order = self.orders[self.captures[capture_id]]
        earlier = [
            r
            for r in order["purchase_units"][0]["payments"].get("refunds", [])
            if r["status"] != "FAILED" and r["status"] != "CANCELLED"
        ]
        refunded = sum((_decimal(r["amount"]["value"]) for r in earlier), Decimal(0))
        if capture["status"] == "REFUNDED" or refunded >= captured:
            return self._unprocessable(
                "CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded."
            )
        if capture["status"] not in ("COMPLETED", "PARTIALLY_REFUNDED"):
            return self._unprocessable(
                "REFUND_NOT_ALLOWED",
                "The capture cannot be refunded in its current state.",
            )
        if "amount" in body:
            if (error := self._money_error(body["amount"], "/amount")) is not None:
                return error
            if body["amount"]["currency_code"] != currency:
                return self._unprocessable(
                    "CURRENCY_MISMATCH",
                    "The currency of the refund must match the currency of the capture.",
                )
            value = _decimal(body["amount"]["value"])
        else:
            value = captured - refunded
        if value > captured - refunded:
            return self._unprocessable(
                "REFUND_AMOUNT_EXCEEDED",
                "The refund amount must be less than or equal to the capture amount that has "
                "not yet been refunded.",
            )
        refund_id = paypal_id()
        base = str(request.base_url).rstrip("/")
        money = {"currency_code": currency, "value": _format(value, currency)}
        refund: dict[str, Any] = {
            "id": refund_id,
            "amount": money,
            "seller_payable_breakdown": {
                "gross_amount": money,
                "net_amount": money,
                "total_refunded_amount": {
                    "currency_code": currency,
                    "value": _format(refunded + value, currency),
                },
            },
            "status": self.refund_status,
            "create_time": _now(),
            "update_time": _now(),
            "links": [
                {"href": f"{base}/v2/payments/refunds/{refund_id}", "rel": "self", "method": "GET"},
                {"href": f"{base}/v2/payments/captures/{capture_id}", "rel": "up", "method": "GET"},
            ],
        }
        for key in ("custom_id", "invoice_id", "note_to_payer"):
            if isinstance(body.get(key), str):
                refund[key] = body[key]
        self.refunds[refund_id] = refund
        order["purchase_units"][0]["payments"].setdefault("refunds", []).append(refund)
        capture["status"] = "REFUNDED" if refunded + value >= captured else "PARTIALLY_REFUNDED"
        capture["update_time"] = _now()
        self._store(token, request, _Stored(operation, "refund", refund_id))
        return JSONResponse(refund, status_code=201)

    async def _get_refund(self, request: Request) -> Response:
        token = self.authenticate(request)
        if isinstance(token, Response):
            return token
        refund = self.refunds.get(request.path_params["refund_id"])
        capture_id = next(
            (
                link["href"].rsplit("/", 1)[1]
                for link in (refund or {}).get("links", [])
                if link["rel"] == "up"
            ),
            "",
        )
        if refund is None or self._owned_capture(token, capture_id) is None:
            return self._not_found(request.path_params["refund_id"])
        if self.refund_completes_on_read and refund["status"] == "PENDING":
            self.complete_refund(refund["id"])
        return JSONResponse(refund)

    def complete_refund(self, refund_id: str, status: str = "COMPLETED") -> None:
        """Settle a PENDING refund as PayPal does later (COMPLETED, FAILED or CANCELLED)."""
        refund = self.refunds[refund_id]
        refund["status"] = status
        refund["update_time"] = _now()

    # --- the payer's side: the approve page ----------------------------------------

    def _waiting_order(self, order_id: str) -> dict[str, Any] | None:
        order = self.orders.get(order_id)
        if order is None or order["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
            return None
        return order

    async def _approve_page(self, request: Request) -> Response:
        order_id = request.query_params.get("token", "")
        order = self.orders.get(order_id)
        if order is None:
            return HTMLResponse("<h1>This checkout session has expired.</h1>", status_code=404)
        amount = order["purchase_units"][0]["amount"]
        token = html.escape(order_id)
        total = html.escape(f"{amount['value']} {amount['currency_code']}")
        if order["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
            return HTMLResponse(
                f"<h1>PayPal</h1><p>Order {token} is {html.escape(order['status'])}.</p>"
            )
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>PayPal Checkout</title></head>
<body>
<h1>PayPal Checkout</h1>
<p>Pay <strong id="total">{total}</strong> to Paygate Test Merchant (order {token}).</p>
<p>Logged in as sb-buyer@personal.example.com</p>
<form method="post" action="/checkoutnow/approve">
<input type="hidden" name="token" value="{token}">
<button type="submit" id="pay">Pay with PayPal</button>
</form>
<form method="post" action="/checkoutnow/cancel">
<input type="hidden" name="token" value="{token}">
<button type="submit" id="cancel">Cancel</button>
</form>
</body></html>"""
        return HTMLResponse(page)

    async def _approve(self, request: Request) -> Response:
        form = await request.form()
        order_id = str(form.get("token") or "")
        if self._waiting_order(order_id) is None:
            return HTMLResponse("<h1>This checkout session has expired.</h1>", status_code=400)
        payer_id = self.approve(order_id)
        meta = self.order_meta[order_id]
        if not meta.return_url:
            return HTMLResponse("<h1>Payment approved.</h1><p>You can close this window.</p>")
        target = _with_query(meta.return_url, {"token": order_id, "PayerID": payer_id})
        return RedirectResponse(target, status_code=303)

    async def _cancel(self, request: Request) -> Response:
        form = await request.form()
        order_id = str(form.get("token") or "")
        if self._waiting_order(order_id) is None:
            return HTMLResponse("<h1>This checkout session has expired.</h1>", status_code=400)
        meta = self.order_meta[order_id]
        target = meta.cancel_url or meta.return_url
        if not target:
            return HTMLResponse("<h1>Payment canceled.</h1>")
        return RedirectResponse(_with_query(target, {"token": order_id}), status_code=303)


class _LateAnswer:
    """Handles the request at once but holds back its answer for `answer_delay_seconds`:
    the provider did the work and the caller times out waiting (unlike `knobs.delay_seconds`,
    which holds the request back before it is handled)."""

    def __init__(self, app: ASGIApp, emulator: PayPalEmulator) -> None:
        self.app = app
        self.emulator = emulator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        delay = self.emulator.answer_delay_seconds
        if scope["type"] != "http" or delay <= 0:
            await self.app(scope, receive, send)
            return

        async def late_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                await asyncio.sleep(delay)
            await send(message)

        await self.app(scope, receive, late_send)
