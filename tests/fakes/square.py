"""A Square API emulator, written from developer.squareup.com's reference.

Implemented now (what "test connection" needs):
- GET /v2/locations: every location of the seller, sorted by name, as
  {"locations": [Location, ...]}.
- GET /v2/locations/{location_id}: {"location": Location}, or 404 NOT_FOUND
  ("main" answers the main location, as Square does).

Every route takes `Authorization: Bearer <access token>`; a missing or malformed
header or an unknown token answers 401 with Square's error body
{"errors": [{"category": "AUTHENTICATION_ERROR", "code": "UNAUTHORIZED", "detail": ...}]}.
The `Square-Version` header is accepted whatever its value and recorded in
`square_versions`.

Payments (card-not-present, from a Web Payments SDK nonce):
- POST /v2/payments {source_id, idempotency_key, amount_money, location_id,
  reference_id, autocomplete, ...} -> {"payment": Payment} (COMPLETED, or APPROVED with
  autocomplete false). Square's documented Sandbox test nonces (SANDBOX_NONCES):
  cnon:card-nonce-ok, -declined (GENERIC_DECLINE), -rejected-cvv (CVV_FAILURE),
  -rejected-postalcode (ADDRESS_VERIFICATION_FAILURE), -rejected-expiration
  (INVALID_EXPIRATION), -already-used (CARD_TOKEN_USED); and a few more this emulator adds
  for error codes Square documents without a test nonce (EMULATOR_NONCES). Any other
  `cnon:` value is a real-looking nonce: it pays, once (then CARD_TOKEN_USED).
  A decline answers 400 {"errors": [{"category": "PAYMENT_METHOD_ERROR", "code": ..,
  "detail": "Authorization error: '..'"}], "payment": <the FAILED payment>}.
- GET /v2/payments/{id}; POST /v2/refunds {idempotency_key, payment_id, amount_money,
  reason} -> {"refund": PaymentRefund} (PENDING, as Square answers first; the
  `refund_status` knob changes it); GET /v2/refunds/{id}.
- Hosted checkout: POST /v2/online-checkout/payment-links with `quick_pay` {name,
  price_money, location_id} and `checkout_options.redirect_url` -> {"payment_link",
  "related_resources": {"orders": [the DRAFT order]}}; GET .../payment-links/{id};
  GET /v2/orders/{id}. The link's URL (/u/{code}) shows a page with "Pay" and "Cancel":
  Pay takes a card payment for the order (the order gets a tender and turns OPEN) and
  redirects (303) to redirect_url?checkoutId=..&orderId=..&transactionId=..; Cancel goes
  back to redirect_url without paying.

Idempotency as Square documents it: the same `idempotency_key` with the same request
answers what the first request made (its object in its latest state, or the same error);
with a different request it answers 400 IDEMPOTENCY_KEY_REUSED.

Knobs besides the common ones (reset by `reset()`): `reported_amount` (the amount a new
payment reports, to test amount checks), `refund_status`, and `answer_delay_seconds`
(handle the request, then answer late: a timeout after Square did the work).
"""

from __future__ import annotations

import asyncio
import html
import json
import secrets
import string
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from tests.fakes.common import Emulator, WebhookDelivery
from tests.fakes.square_webhooks import SquareWebhooks

DEFAULT_ACCESS_TOKEN = "EAAAl8zW3jQyq0n4xbgZ5dYtSfm1cK2a9pV7uHrEoT6iLwN0BsJeXvRkMCPhUDGg"
DEFAULT_MERCHANT_ID = "MLQW9R4BJ2KX7"
DEFAULT_LOCATION_ID = "LH2XR7AMG39HX"

_ID_ALPHABET = string.ascii_uppercase + string.digits
_LONG_ID_ALPHABET = string.ascii_letters + string.digits

# Square's documented Sandbox payment tokens: nonce -> the error code (None: it pays).
SANDBOX_NONCES: dict[str, str | None] = {
    "cnon:card-nonce-ok": None,
    "cnon:card-nonce-declined": "GENERIC_DECLINE",
    "cnon:card-nonce-rejected-cvv": "CVV_FAILURE",
    "cnon:card-nonce-rejected-postalcode": "ADDRESS_VERIFICATION_FAILURE",
    "cnon:card-nonce-rejected-expiration": "INVALID_EXPIRATION",
}
ALREADY_USED_NONCE = "cnon:card-nonce-already-used"
# Not Square's: this emulator's nonces for error codes Square documents without a test value.
EMULATOR_NONCES: dict[str, str] = {
    "cnon:card-nonce-insufficient-funds": "INSUFFICIENT_FUNDS",
    "cnon:card-nonce-card-expired": "CARD_EXPIRED",
    "cnon:card-nonce-verify-cvv-failure": "VERIFY_CVV_FAILURE",
    "cnon:card-nonce-verification-required": "CARD_DECLINED_VERIFICATION_REQUIRED",
    "cnon:card-nonce-blocked": "BLOCKED_BY_BLOCKLIST",
    "cnon:card-nonce-call-issuer": "CARD_DECLINED_CALL_ISSUER",
}


def square_id(length: int = 29) -> str:
    """Square's payment and order ids: letters and digits."""
    return "".join(secrets.choice(_LONG_ID_ALPHABET) for _ in range(length))


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _with_query(url: str, params: dict[str, str]) -> str:
    parts = urlsplit(url)
    query = "&".join(q for q in (parts.query, urlencode(params)) if q)
    return urlunsplit(parts._replace(query=query))


@dataclass
class _Idempotent:
    """What an idempotency key made: the request it came with and the answer to give again."""

    request: Any
    kind: str  # "payment", "refund", "link" or "error"
    resource_id: str = ""
    status: int = 200
    error: dict[str, Any] | None = None


def new_location_id() -> str:
    # Square ids are 13 upper-case letters and digits; locations start with L.
    return "L" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def square_error(category: str, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"category": category, "code": code, "detail": detail}
    if field is not None:
        error["field"] = field
    return {"errors": [error]}


class SquareEmulator(Emulator):
    def __init__(
        self,
        *,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        merchant_id: str = DEFAULT_MERCHANT_ID,
        location_id: str = DEFAULT_LOCATION_ID,
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.merchant_id = merchant_id
        self.location_id = location_id
        self.main_location_id = location_id
        self._initial = (access_token, location_id)
        # Further valid tokens a test may add besides `access_token`.
        self.extra_tokens: set[str] = set()
        self.locations: dict[str, dict[str, Any]] = {}
        self.square_versions: list[str] = []
        self._seed()
        self._clear_payments()
        self.webhooks = SquareWebhooks(merchant_id)
        self.app: ASGIApp = self.wrap(_LateAnswer(Starlette(routes=self.routes()), self))

    def routes(self) -> list[Route]:
        return [
            Route("/v2/locations", self._list_locations, methods=["GET"]),
            Route("/v2/locations/{location_id}", self._retrieve_location, methods=["GET"]),
            Route("/v2/payments", self._create_payment, methods=["POST"]),
            Route("/v2/payments/{payment_id}", self._get_payment, methods=["GET"]),
            Route("/v2/refunds", self._refund_payment, methods=["POST"]),
            Route("/v2/refunds/{refund_id}", self._get_refund, methods=["GET"]),
            Route("/v2/online-checkout/payment-links", self._create_payment_link, methods=["POST"]),
            Route(
                "/v2/online-checkout/payment-links/{link_id}",
                self._get_payment_link,
                methods=["GET"],
            ),
            Route("/v2/orders/{order_id}", self._get_order, methods=["GET"]),
            Route("/u/{code}", self._checkout_page, methods=["GET"]),
            Route("/u/{code}/pay", self._checkout_pay, methods=["POST"]),
            Route("/u/{code}/cancel", self._checkout_cancel, methods=["POST"]),
            *self.webhooks.routes(self.authenticate),
        ]

    def _clear_payments(self) -> None:
        self.payments: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.orders: dict[str, dict[str, Any]] = {}
        self.payment_links: dict[str, dict[str, Any]] = {}
        # The short code of a link's URL -> link id.
        self.link_codes: dict[str, str] = {}
        self.idempotency: dict[tuple[str, str], _Idempotent] = {}
        self.used_nonces: set[str] = set()
        self.reported_amount: int | None = None
        self.refund_status = "PENDING"
        # True: a PENDING refund read with GET /v2/refunds/{id} is COMPLETED by then.
        self.refund_completes_on_read = False
        self.answer_delay_seconds = 0.0

    def payments_for(self, reference_id: str) -> list[dict[str, Any]]:
        return [p for p in self.payments.values() if p.get("reference_id") == reference_id]

    def _seed(self) -> None:
        self.locations.clear()
        self.add_location("Main Street", location_id=self.location_id, main=True)

    def reset(self) -> None:
        super().reset()
        self.access_token, self.location_id = self._initial
        self.extra_tokens.clear()
        self.square_versions.clear()
        self._seed()
        self._clear_payments()
        self.webhooks.reset()

    # --- webhooks (tests/fakes/square_webhooks.py) -----------------------------------

    def payment_event(
        self, payment_id: str, event_type: str = "payment.updated"
    ) -> list[WebhookDelivery]:
        """Notify the subscribers of a payment's current state."""
        return self.webhooks.notify(event_type, "payment", payment_id, self.payments[payment_id])

    def refund_event(
        self, refund_id: str, event_type: str = "refund.updated"
    ) -> list[WebhookDelivery]:
        return self.webhooks.notify(event_type, "refund", refund_id, self.refunds[refund_id])

    def dispute_event(
        self, payment_id: str, state: str, *, dispute_id: str = "", event_type: str = ""
    ) -> list[WebhookDelivery]:
        """A dispute of the payment in `state` (e.g. EVIDENCE_REQUIRED, WON, LOST)."""
        payment = self.payments[payment_id]
        dispute = {
            "dispute_id": dispute_id or square_id(22),
            "amount_money": dict(payment["amount_money"]),
            "reason": "NOT_AS_DESCRIBED",
            "state": state,
            "disputed_payment": {"payment_id": payment_id},
            "card_brand": "VISA",
            "created_at": _now(),
            "updated_at": _now(),
        }
        kind = event_type or (
            "dispute.created" if state == "EVIDENCE_REQUIRED" else "dispute.state.updated"
        )
        return self.webhooks.notify(kind, "dispute", dispute["dispute_id"], dispute)

    def add_location(
        self,
        name: str,
        *,
        location_id: str | None = None,
        status: str = "ACTIVE",
        currency: str = "USD",
        country: str = "US",
        main: bool = False,
    ) -> dict[str, Any]:
        """Add a location shaped like Square's `Location` object and return it."""
        new_id = location_id or new_location_id()
        location: dict[str, Any] = {
            "id": new_id,
            "name": name,
            "address": {
                "address_line_1": "1600 Pennsylvania Ave",
                "locality": "San Francisco",
                "administrative_district_level_1": "CA",
                "postal_code": "94103",
                "country": country,
            },
            "timezone": "America/Los_Angeles",
            "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
            "status": status,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "merchant_id": self.merchant_id,
            "country": country,
            "language_code": "en-US",
            "currency": currency,
            "business_name": "Paygate Test Shop",
            "type": "PHYSICAL",
            "business_hours": {},
            "mcc": "7299",
        }
        self.locations[new_id] = location
        if main:
            self.main_location_id = new_id
        return location

    def server_error_body(self, status: int) -> dict[str, Any]:
        if status == 503:
            return square_error(
                "API_ERROR", "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."
            )
        if status == 504:
            return square_error("API_ERROR", "GATEWAY_TIMEOUT", "The gateway timed out.")
        return square_error("API_ERROR", "INTERNAL_SERVER_ERROR", "An internal error has occurred.")

    # --- auth -----------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        """None when the Bearer token is valid, else Square's 401 answer."""
        version = request.headers.get("square-version")
        if version:
            self.square_versions.append(version)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return self.error(
                401,
                "AUTHENTICATION_ERROR",
                "UNAUTHORIZED",
                "The `Authorization` http header of your request was malformed. The header "
                'value is expected to be of the format "Bearer TOKEN" (without quotation '
                "marks), where TOKEN is to be replaced with your access token.",
            )
        if token != self.access_token and token not in self.extra_tokens:
            return self.error(
                401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized."
            )
        return None

    def error(
        self, status: int, category: str, code: str, detail: str, field: str | None = None
    ) -> JSONResponse:
        return JSONResponse(square_error(category, code, detail, field), status_code=status)

    # --- locations ------------------------------------------------------------------

    async def _list_locations(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        ordered = sorted(self.locations.values(), key=lambda loc: str(loc["name"]))
        return JSONResponse({"locations": ordered})

    async def _retrieve_location(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        location_id = request.path_params["location_id"]
        if location_id == "main":
            location_id = self.main_location_id
        location = self.locations.get(location_id)
        if location is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Location with id `{location_id}` not found.",
            )
        return JSONResponse({"location": location})

    # --- shared pieces of the payment routes -----------------------------------------

    async def _body(self, request: Request) -> dict[str, Any] | JSONResponse:
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            return self.error(
                400, "INVALID_REQUEST_ERROR", "INVALID_CONTENT_TYPE", "Invalid JSON body."
            )
        return body

    def _missing(self, field: str) -> JSONResponse:
        return self.error(
            400,
            "INVALID_REQUEST_ERROR",
            "MISSING_REQUIRED_PARAMETER",
            f"Missing required parameter: {field}",
            field,
        )

    def _money_error(self, money: Any, field: str) -> JSONResponse | None:
        if not isinstance(money, dict):
            return self._missing(field)
        amount, currency = money.get("amount"), money.get("currency")
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            return self.error(
                400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", "Invalid amount.", f"{field}.amount"
            )
        if not isinstance(currency, str) or len(currency) != 3:
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                "Invalid currency.",
                f"{field}.currency",
            )
        return None

    def _location_error(self, location_id: Any) -> JSONResponse | None:
        location = self.locations.get(str(location_id))
        if location is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Location with id `{location_id}` not found.",
            )
        if location["status"] != "ACTIVE":
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "LOCATION_MISMATCH",
                f"Location `{location_id}` is not active.",
            )
        return None

    def _replay(self, endpoint: str, body: dict[str, Any]) -> Response | None:
        key = body.get("idempotency_key")
        if not isinstance(key, str) or not key:
            return None
        stored = self.idempotency.get((endpoint, key))
        if stored is None:
            return None
        if stored.request != body:
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "IDEMPOTENCY_KEY_REUSED",
                "The idempotency key can only be retried with the same request data.",
                "idempotency_key",
            )
        if stored.kind == "error":
            return JSONResponse(stored.error, status_code=stored.status)
        if stored.kind == "payment":
            return JSONResponse({"payment": self.payments[stored.resource_id]})
        if stored.kind == "refund":
            return JSONResponse({"refund": self.refunds[stored.resource_id]})
        return JSONResponse(self._link_answer(stored.resource_id))

    def _remember(self, endpoint: str, body: dict[str, Any], stored: _Idempotent) -> None:
        key = body.get("idempotency_key")
        if isinstance(key, str) and key:
            stored.request = body
            self.idempotency[(endpoint, key)] = stored

    def _new_payment(
        self,
        *,
        money: dict[str, Any],
        location_id: str,
        order_id: str,
        status: str = "COMPLETED",
        reference_id: str | None = None,
        note: str | None = None,
        error_code: str | None = None,
    ) -> dict[str, Any]:
        payment_id = square_id()
        now = _now()
        if self.reported_amount is not None and error_code is None:
            money = {"amount": self.reported_amount, "currency": money["currency"]}
        card_status = {"COMPLETED": "CAPTURED", "APPROVED": "AUTHORIZED", "FAILED": "FAILED"}[
            status
        ]
        card_details: dict[str, Any] = {
            "status": card_status,
            "card": {
                "card_brand": "VISA",
                "last_4": "1111",
                "exp_month": 12,
                "exp_year": datetime.now(UTC).year + 3,
                "fingerprint": "sq-1-" + square_id(40),
                "card_type": "CREDIT",
                "prepaid_type": "NOT_PREPAID",
                "bin": "411111",
            },
            "entry_method": "KEYED",
            "cvv_status": "CVV_REJECTED" if "CVV" in (error_code or "") else "CVV_ACCEPTED",
            "avs_status": "AVS_REJECTED" if "ADDRESS" in (error_code or "") else "AVS_ACCEPTED",
            "statement_description": "SQ *DEFAULT TEST ACCOUNT",
            "card_payment_timeline": {"authorized_at": now},
        }
        if status == "COMPLETED":
            card_details["card_payment_timeline"]["captured_at"] = now
        if error_code is not None:
            card_details["errors"] = [
                {
                    "category": "PAYMENT_METHOD_ERROR",
                    "code": error_code,
                    "detail": f"Authorization error: '{error_code}'",
                }
            ]
        payment: dict[str, Any] = {
            "id": payment_id,
            "created_at": now,
            "updated_at": now,
            "amount_money": money,
            "total_money": money,
            "status": status,
            "delay_duration": "PT168H",
            "delay_action": "CANCEL",
            "source_type": "CARD",
            "card_details": card_details,
            "location_id": location_id,
            "order_id": order_id,
            "risk_evaluation": {"created_at": now, "risk_level": "NORMAL"},
            "receipt_number": payment_id[:4],
            "receipt_url": f"https://squareupsandbox.com/receipt/preview/{payment_id}",
            "application_details": {
                "square_product": "ECOMMERCE_API",
                "application_id": "sandbox-sq0idb-emulator",
            },
            "version_token": square_id(40),
        }
        if status != "FAILED":
            payment["approved_money"] = money
        if status == "COMPLETED":
            fee = money["amount"] * 29 // 1000 + 30
            payment["processing_fee"] = [
                {
                    "effective_at": now,
                    "type": "INITIAL",
                    "amount_money": {"amount": fee, "currency": money["currency"]},
                }
            ]
        if reference_id:
            payment["reference_id"] = reference_id
        if note:
            payment["note"] = note
        self.payments[payment_id] = payment
        return payment

    def _new_order(
        self, *, name: str, money: dict[str, Any], location_id: str, state: str
    ) -> dict[str, Any]:
        order_id = square_id(27)
        now = _now()
        zero = {"amount": 0, "currency": money["currency"]}
        order: dict[str, Any] = {
            "id": order_id,
            "location_id": location_id,
            "source": {"name": "Paygate Test Application"},
            "line_items": [
                {
                    "uid": square_id(22),
                    "name": name,
                    "quantity": "1",
                    "item_type": "ITEM",
                    "base_price_money": money,
                    "variation_total_price_money": money,
                    "gross_sales_money": money,
                    "total_tax_money": zero,
                    "total_discount_money": zero,
                    "total_money": money,
                }
            ],
            "net_amounts": {
                "total_money": money,
                "tax_money": zero,
                "discount_money": zero,
                "tip_money": zero,
                "service_charge_money": zero,
            },
            "created_at": now,
            "updated_at": now,
            "state": state,
            "version": 1,
            "total_money": money,
            "total_tax_money": zero,
            "total_discount_money": zero,
            "total_tip_money": zero,
            "total_service_charge_money": zero,
            "net_amount_due_money": money if state == "DRAFT" else zero,
        }
        self.orders[order_id] = order
        return order

    def _tender(self, order: dict[str, Any], payment: dict[str, Any]) -> None:
        order.setdefault("tenders", []).append(
            {
                "id": payment["id"],
                "location_id": payment["location_id"],
                "transaction_id": order["id"],
                "created_at": payment["created_at"],
                "amount_money": payment["amount_money"],
                "type": "CARD",
                "card_details": {
                    "status": payment["card_details"]["status"],
                    "card": {
                        k: payment["card_details"]["card"][k]
                        for k in ("card_brand", "last_4", "fingerprint")
                    },
                    "entry_method": "KEYED",
                },
                "payment_id": payment["id"],
            }
        )
        order["net_amount_due_money"] = {"amount": 0, "currency": order["total_money"]["currency"]}
        order["updated_at"] = _now()
        order["version"] += 1

    # --- payments -------------------------------------------------------------------

    async def _create_payment(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        for required in ("source_id", "idempotency_key"):
            if not isinstance(body.get(required), str) or not body[required]:
                return self._missing(required)
        if (replayed := self._replay("payments", body)) is not None:
            return replayed
        if (error := self._money_error(body.get("amount_money"), "amount_money")) is not None:
            return error
        location_id = body.get("location_id") or self.main_location_id
        if (error := self._location_error(location_id)) is not None:
            return error
        source = body["source_id"]
        if source == ALREADY_USED_NONCE or source in self.used_nonces:
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "CARD_TOKEN_USED",
                "Card nonce already used; please request new nonce.",
                "source_id",
            )
        if not source.startswith("cnon:"):
            return self.error(
                400, "INVALID_REQUEST_ERROR", "INVALID_VALUE", "Invalid source_id.", "source_id"
            )
        error_code = SANDBOX_NONCES.get(source) or EMULATOR_NONCES.get(source)
        if source not in SANDBOX_NONCES and source not in EMULATOR_NONCES:
            self.used_nonces.add(source)  # a real nonce is good for one payment
        money = dict(body["amount_money"])
        order = self._new_order(
            name="Custom Amount", money=money, location_id=location_id, state="OPEN"
        )
        status = (
            "FAILED"
            if error_code
            else ("COMPLETED" if body.get("autocomplete", True) else "APPROVED")
        )
        payment = self._new_payment(
            money=money,
            location_id=location_id,
            order_id=order["id"],
            status=status,
            reference_id=body.get("reference_id"),
            note=body.get("note"),
            error_code=error_code,
        )
        if error_code is not None:
            order["state"] = "CANCELED"
            answer = {
                "errors": [
                    {
                        "code": error_code,
                        "detail": f"Authorization error: '{error_code}'",
                        "category": "PAYMENT_METHOD_ERROR",
                    }
                ],
                "payment": payment,
            }
            self._remember("payments", body, _Idempotent(body, "error", status=400, error=answer))
            return JSONResponse(answer, status_code=400)
        self._tender(order, payment)
        if status == "COMPLETED":
            order["state"] = "COMPLETED"
            order["closed_at"] = _now()
        self._remember("payments", body, _Idempotent(body, "payment", payment["id"]))
        return JSONResponse({"payment": payment})

    async def _get_payment(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        payment = self.payments.get(request.path_params["payment_id"])
        if payment is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Could not find payment with id: {request.path_params['payment_id']}",
            )
        return JSONResponse({"payment": payment})

    # --- refunds --------------------------------------------------------------------

    async def _refund_payment(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        for required in ("idempotency_key", "payment_id"):
            if not isinstance(body.get(required), str) or not body[required]:
                return self._missing(required)
        if (replayed := self._replay("refunds", body)) is not None:
            return replayed
        if (error := self._money_error(body.get("amount_money"), "amount_money")) is not None:
            return error
        payment = self.payments.get(body["payment_id"])
        if payment is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Could not find payment with id: {body['payment_id']}",
            )
        money = body["amount_money"]
        if payment["status"] != "COMPLETED":
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "PAYMENT_NOT_REFUNDABLE",
                f"Payment status is {payment['status']}: only COMPLETED payments are refundable.",
            )
        if money["currency"] != payment["total_money"]["currency"]:
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "INVALID_VALUE",
                "The refund currency must match the payment's.",
                "amount_money.currency",
            )
        refunded = payment.get("refunded_money", {}).get("amount", 0)
        if money["amount"] <= 0 or refunded + money["amount"] > payment["total_money"]["amount"]:
            return self.error(
                400,
                "INVALID_REQUEST_ERROR",
                "REFUND_AMOUNT_INVALID",
                "The requested refund amount exceeds the amount available to refund.",
                "amount_money.amount",
            )
        now = _now()
        refund: dict[str, Any] = {
            "id": f"{payment['id']}_{square_id(40)}",
            "status": self.refund_status,
            "amount_money": money,
            "payment_id": payment["id"],
            "order_id": payment["order_id"],
            "location_id": payment["location_id"],
            "destination_type": "CARD",
            "created_at": now,
            "updated_at": now,
        }
        if body.get("reason"):
            refund["reason"] = body["reason"]
        self.refunds[refund["id"]] = refund
        payment["refunded_money"] = {
            "amount": refunded + money["amount"],
            "currency": money["currency"],
        }
        payment.setdefault("refund_ids", []).append(refund["id"])
        payment["updated_at"] = now
        self._remember("refunds", body, _Idempotent(body, "refund", refund["id"]))
        return JSONResponse({"refund": refund})

    async def _get_refund(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        refund = self.refunds.get(request.path_params["refund_id"])
        if refund is None:
            return self.error(404, "INVALID_REQUEST_ERROR", "NOT_FOUND", "Could not find refund.")
        if self.refund_completes_on_read and refund["status"] == "PENDING":
            self.complete_refund(refund["id"])
        return JSONResponse({"refund": refund})

    def complete_refund(self, refund_id: str, status: str = "COMPLETED") -> None:
        """Settle a PENDING refund as Square does a little later (COMPLETED or FAILED)."""
        refund = self.refunds[refund_id]
        refund["status"] = status
        refund["updated_at"] = _now()
        if status in ("FAILED", "REJECTED"):
            payment = self.payments[refund["payment_id"]]
            refunded = payment["refunded_money"]
            refunded["amount"] -= refund["amount_money"]["amount"]

    # --- hosted checkout: payment links and orders ---------------------------------

    def _link_answer(self, link_id: str) -> dict[str, Any]:
        link = self.payment_links[link_id]
        return {
            "payment_link": link,
            "related_resources": {"orders": [self.orders[link["order_id"]]]},
        }

    async def _create_payment_link(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        body = await self._body(request)
        if isinstance(body, Response):
            return body
        if (replayed := self._replay("payment-links", body)) is not None:
            return replayed
        quick_pay = body.get("quick_pay")
        if not isinstance(quick_pay, dict):
            return self._missing("quick_pay")
        if not isinstance(quick_pay.get("name"), str) or not quick_pay["name"]:
            return self._missing("quick_pay.name")
        if (
            error := self._money_error(quick_pay.get("price_money"), "quick_pay.price_money")
        ) is not None:
            return error
        if not quick_pay.get("location_id"):
            return self._missing("quick_pay.location_id")
        if (error := self._location_error(quick_pay["location_id"])) is not None:
            return error
        order = self._new_order(
            name=quick_pay["name"],
            money=dict(quick_pay["price_money"]),
            location_id=quick_pay["location_id"],
            state="DRAFT",
        )
        link_id = "".join(secrets.choice(_ID_ALPHABET) for _ in range(16))
        code = square_id(8)
        base = str(request.base_url).rstrip("/")
        link: dict[str, Any] = {
            "id": link_id,
            "version": 1,
            "order_id": order["id"],
            "url": f"{base}/u/{code}",
            "long_url": f"{base}/checkout/{link_id}",
            "created_at": _now(),
        }
        for key in ("description", "checkout_options", "payment_note", "pre_populated_data"):
            if key in body:
                link[key] = body[key]
        self.payment_links[link_id] = link
        self.link_codes[code] = link_id
        self._remember("payment-links", body, _Idempotent(body, "link", link_id))
        return JSONResponse(self._link_answer(link_id))

    async def _get_payment_link(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        link_id = request.path_params["link_id"]
        if link_id not in self.payment_links:
            return self.error(
                404, "INVALID_REQUEST_ERROR", "NOT_FOUND", f"Payment link {link_id} not found."
            )
        return JSONResponse({"payment_link": self.payment_links[link_id]})

    async def _get_order(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        order = self.orders.get(request.path_params["order_id"])
        if order is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Order `{request.path_params['order_id']}` not found.",
            )
        return JSONResponse({"order": order})

    # --- the buyer's side: the hosted checkout page ---------------------------------

    def _link_for_code(self, code: str) -> dict[str, Any] | None:
        link_id = self.link_codes.get(code)
        return self.payment_links.get(link_id) if link_id else None

    async def _checkout_page(self, request: Request) -> Response:
        code = request.path_params["code"]
        link = self._link_for_code(code)
        if link is None:
            return HTMLResponse("<h1>This link is not valid.</h1>", status_code=404)
        order = self.orders[link["order_id"]]
        if order.get("tenders"):
            return HTMLResponse("<h1>Square Checkout</h1><p>This order has been paid.</p>")
        money = order["total_money"]
        name = html.escape(order["line_items"][0]["name"])
        total = html.escape(f"{money['amount']} {money['currency']} (minor units)")
        page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Square Checkout</title></head>
<body>
<h1>Square Checkout</h1>
<p>{name}: <strong id="total">{total}</strong></p>
<p>Card: Visa ending in 1111 (Sandbox)</p>
<form method="post" action="/u/{html.escape(code)}/pay">
<button type="submit" id="pay">Pay</button>
</form>
<form method="post" action="/u/{html.escape(code)}/cancel">
<button type="submit" id="cancel">Cancel</button>
</form>
</body></html>"""
        return HTMLResponse(page)

    async def _checkout_pay(self, request: Request) -> Response:
        link = self._link_for_code(request.path_params["code"])
        if link is None:
            return HTMLResponse("<h1>This link is not valid.</h1>", status_code=404)
        order = self.orders[link["order_id"]]
        if order.get("tenders"):
            return HTMLResponse("<h1>This order has been paid.</h1>", status_code=400)
        payment = self._new_payment(
            money=dict(order["total_money"]),
            location_id=order["location_id"],
            order_id=order["id"],
            note=link.get("payment_note"),
        )
        self._tender(order, payment)
        order["state"] = "OPEN"
        redirect_url = (link.get("checkout_options") or {}).get("redirect_url")
        if not redirect_url:
            return HTMLResponse("<h1>Payment successful.</h1>")
        params = {"checkoutId": link["id"], "orderId": order["id"], "transactionId": order["id"]}
        return RedirectResponse(_with_query(redirect_url, params), status_code=303)

    async def _checkout_cancel(self, request: Request) -> Response:
        link = self._link_for_code(request.path_params["code"])
        if link is None:
            return HTMLResponse("<h1>This link is not valid.</h1>", status_code=404)
        redirect_url = (link.get("checkout_options") or {}).get("redirect_url")
        if not redirect_url:
            return HTMLResponse("<h1>Checkout canceled.</h1>")
        return RedirectResponse(redirect_url, status_code=303)


class _LateAnswer:
    """Handles the request at once but holds back its answer for `answer_delay_seconds`:
    the provider did the work and the caller times out waiting (unlike `knobs.delay_seconds`,
    which holds the request back before it is handled)."""

    def __init__(self, app: ASGIApp, emulator: SquareEmulator) -> None:
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
