"""The reference implementation of docs/custom-gateway.md, used as paygate's test emulator.

Routes (all need `Authorization: Bearer <api_key>`):
- GET /health -> {"status": "ok"}; set `health_status` to answer e.g. "degraded".
- POST /payments, GET /payments/{id}, POST /payments/{id}/refunds,
  GET /payments/{id}/refunds/{refund_id}, with the contract's idempotency rules (same key +
  same body replays the object in its current state, different body 409). New refunds get
  `refund_status` ("succeeded", or "pending" until `settle_refund`).
- GET /emulator/actions/{id}?result=succeed|fail: the page `redirect_url` points to;
  it finishes a `requires_action` payment and redirects to its `return_url`.
  This route is the emulator's "payer", so it needs no API key.

Payment methods: `tok_<card number>` for any card of paygate's sandbox table
(`paygate.gateways.adapters.sandbox.SANDBOX_CARDS`) gives that card's outcome
(the slow card answers `processing`, the amount-mismatch card pays but reports one minor
unit less); `tok_visa` succeeds; anything else is a 400.

Webhooks are not sent by themselves: every status change after creation is put in
`outbox` as a `WebhookDelivery` (body bytes plus Standard Webhooks headers signed
with `webhook_secret`, and also with `previous_webhook_secret` while set: a rotation),
for a test to POST wherever it wants. Besides `settle` and `settle_refund`, the gateway's
own actions: `refund_at_gateway` (a refund made in its dashboard) and `dispute` (a
chargeback opened, or closed won or lost), each with its webhook.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from paygate.gateways.adapters.sandbox import SandboxOutcome, sandbox_card
from tests.fakes.common import Emulator, WebhookDelivery

DEFAULT_API_KEY = "cgw_live_key_5f1c0e9a7b3d4c2e8a6f"
DEFAULT_WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"paygate-custom-gateway-test-secret").decode()

DECLINE_MESSAGES = {
    "card_declined": "The card was declined.",
    "insufficient_funds": "The card has insufficient funds.",
    "expired_card": "The card has expired.",
    "incorrect_cvc": "The card's security code is incorrect.",
    "processing_error": "An error occurred while processing the card.",
    "fraud_suspected": "The payment was refused as likely fraud.",
}
REFUND_REASONS = {"requested_by_customer", "duplicate", "fraudulent"}
FINAL_STATUSES = {"succeeded", "failed"}


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def error_body(error_type: str, message: str, param: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if param is not None:
        error["param"] = param
    return {"error": error}


def _error(status: int, error_type: str, message: str, param: str | None = None) -> JSONResponse:
    return JSONResponse(error_body(error_type, message, param), status_code=status)


@dataclass
class _Stored:
    """An idempotent answer: the request body it answered and what it answered."""

    fingerprint: str
    status_code: int
    body: dict[str, Any]


@dataclass
class CustomGatewayState:
    payments: dict[str, dict[str, Any]] = field(default_factory=dict)
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)
    idempotency: dict[tuple[str, str], _Stored] = field(default_factory=dict)
    outbox: list[WebhookDelivery] = field(default_factory=list)


class CustomGatewayEmulator(Emulator):
    def __init__(
        self, *, api_key: str = DEFAULT_API_KEY, webhook_secret: str = DEFAULT_WEBHOOK_SECRET
    ) -> None:
        super().__init__()
        self.api_key = api_key
        self.webhook_secret = webhook_secret
        self._initial = (api_key, webhook_secret)
        # What /health reports in "status"; anything but "ok" fails paygate's check.
        self.health_status = "ok"
        # While set, every webhook carries a second signature made with it (a rotation).
        self.previous_webhook_secret: str | None = None
        # The status a new refund gets: "succeeded", or "pending" (settle it with
        # `settle_refund`).
        self.refund_status = "succeeded"
        self.state = CustomGatewayState()
        self.app: ASGIApp = self.wrap(
            Starlette(
                routes=[
                    Route("/health", self._health, methods=["GET"]),
                    Route("/payments", self._create_payment, methods=["POST"]),
                    Route("/payments/{payment_id}", self._get_payment, methods=["GET"]),
                    Route("/payments/{payment_id}/refunds", self._create_refund, methods=["POST"]),
                    Route(
                        "/payments/{payment_id}/refunds/{refund_id}",
                        self._get_refund,
                        methods=["GET"],
                    ),
                    Route("/emulator/actions/{payment_id}", self._complete_action, methods=["GET"]),
                ]
            )
        )

    @property
    def outbox(self) -> list[WebhookDelivery]:
        return self.state.outbox

    def reset(self) -> None:
        super().reset()
        self.api_key, self.webhook_secret = self._initial
        self.previous_webhook_secret = None
        self.health_status = "ok"
        self.refund_status = "succeeded"
        self.state = CustomGatewayState()

    def server_error_body(self, status: int) -> dict[str, Any]:
        if status == 503:
            return error_body("unavailable", "The gateway is temporarily unavailable.")
        return error_body("internal_error", "An internal error occurred.")

    # --- auth and idempotency -------------------------------------------------------

    def _denied(self, request: Request) -> JSONResponse | None:
        scheme, _, key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not key:
            return _error(401, "authentication_failed", "Missing Bearer API key.")
        if not secrets.compare_digest(key, self.api_key):
            return _error(401, "authentication_failed", "Invalid API key.")
        return None

    async def _json_body(self, request: Request) -> dict[str, Any] | JSONResponse:
        raw = await request.body()
        if not raw:
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            return _error(400, "invalid_request", "The body is not valid JSON.")
        if not isinstance(body, dict):
            return _error(400, "invalid_request", "The body must be a JSON object.")
        return body

    def _replay(
        self, request: Request, scope: str, body: dict[str, Any]
    ) -> tuple[str, JSONResponse | None]:
        """(key, None) to go ahead, or (key, stored answer / error) to answer now."""
        key = request.headers.get("idempotency-key", "")
        if not key or len(key) > 255 or not key.isprintable():
            return key, _error(
                400, "invalid_request", "Idempotency-Key header is required.", "Idempotency-Key"
            )
        fingerprint = json.dumps(body, sort_keys=True)
        stored = self.state.idempotency.get((scope, key))
        if stored is None:
            return key, None
        if stored.fingerprint != fingerprint:
            return key, _error(
                409,
                "idempotency_conflict",
                "This Idempotency-Key was used with a different request body.",
            )
        # A replay answers the current object, with the first answer's status code.
        return key, JSONResponse(self._current(stored.body), status_code=stored.status_code)

    def _remember(
        self, scope: str, key: str, body: dict[str, Any], status_code: int, answer: dict[str, Any]
    ) -> None:
        self.state.idempotency[(scope, key)] = _Stored(
            json.dumps(body, sort_keys=True), status_code, answer
        )

    def _current(self, obj: dict[str, Any]) -> dict[str, Any]:
        if "payment_id" in obj:
            return self.state.refunds.get(obj["id"], obj)
        return self._payment_view(self.state.payments.get(obj["id"], obj))

    # --- health ---------------------------------------------------------------------

    async def _health(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        return JSONResponse({"status": self.health_status, "version": "1"})

    # --- payments -------------------------------------------------------------------

    async def _create_payment(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        body = await self._json_body(request)
        if isinstance(body, JSONResponse):
            return body
        key, early = self._replay(request, "payments", body)
        if early is not None:
            return early
        invalid = _validate_payment(body)
        if invalid is not None:
            return invalid
        token = str(body["payment_method"])
        outcome, decline_code = _token_outcome(token)
        if outcome is None:
            return _error(400, "invalid_request", "Unknown payment method token.", "payment_method")
        return_url = body.get("return_url")
        if outcome is SandboxOutcome.REQUIRES_ACTION and not return_url:
            return _error(
                400,
                "invalid_request",
                "This payment method needs a return_url for the payer's action.",
                "return_url",
            )
        payment_id = f"pay_{secrets.token_hex(8)}"
        status = {
            SandboxOutcome.SUCCEEDED: "succeeded",
            SandboxOutcome.DECLINED: "failed",
            SandboxOutcome.REQUIRES_ACTION: "requires_action",
            SandboxOutcome.UNKNOWN: "processing",
            # Like paygate's sandbox: it pays, but reports one minor unit less than asked.
            SandboxOutcome.AMOUNT_MISMATCH: "succeeded",
        }[outcome]
        amount = body["amount"] - 1 if outcome is SandboxOutcome.AMOUNT_MISMATCH else body["amount"]
        now = _now()
        payment: dict[str, Any] = {
            "id": payment_id,
            "status": status,
            "amount": amount,
            "currency": body["currency"],
            "amount_refunded": 0,
            "payment_method": token,
            "reference": body["reference"],
            "description": body.get("description"),
            "decline_code": decline_code,
            "decline_message": DECLINE_MESSAGES.get(decline_code or ""),
            "redirect_url": (
                f"{self.base_url}/emulator/actions/{payment_id}"
                if status == "requires_action"
                else None
            ),
            "return_url": return_url,
            "metadata": body.get("metadata") or {},
            "created_at": now,
            "updated_at": now,
        }
        self.state.payments[payment_id] = payment
        answer = self._payment_view(payment)
        self._remember("payments", key, body, 201, answer)
        return JSONResponse(answer, status_code=201)

    async def _get_payment(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        payment = self.state.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "No such payment.")
        return JSONResponse(self._payment_view(payment))

    def _payment_view(self, payment: dict[str, Any]) -> dict[str, Any]:
        view = {k: v for k, v in payment.items() if k != "return_url"}
        view["refunds"] = [
            r for r in self.state.refunds.values() if r["payment_id"] == payment["id"]
        ]
        return view

    def settle(self, payment_id: str, status: str, *, decline_code: str | None = None) -> None:
        """Move a pending payment to a final status (as the real gateway would later),
        and queue its webhook."""
        payment = self.state.payments[payment_id]
        if payment["status"] in FINAL_STATUSES:
            raise ValueError(f"payment {payment_id} is already {payment['status']}")
        if status == "failed":
            code = decline_code or "card_declined"
            payment["decline_code"] = code
            payment["decline_message"] = DECLINE_MESSAGES.get(code)
        payment["status"] = status
        payment["redirect_url"] = None
        payment["updated_at"] = _now()
        self.queue_webhook(f"payment.{status}", self._payment_view(payment))

    async def _complete_action(self, request: Request) -> Response:
        payment = self.state.payments.get(request.path_params["payment_id"])
        if payment is None or payment["status"] != "requires_action":
            return _error(404, "not_found", "No payment waits for an action here.")
        result = request.query_params.get("result", "succeed")
        if result == "fail":
            self.settle(payment["id"], "failed", decline_code="card_declined")
        else:
            self.settle(payment["id"], "succeeded")
        return RedirectResponse(_with_query(payment["return_url"], payment["id"]), 303)

    # --- refunds --------------------------------------------------------------------

    async def _create_refund(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        payment = self.state.payments.get(request.path_params["payment_id"])
        if payment is None:
            return _error(404, "not_found", "No such payment.")
        body = await self._json_body(request)
        if isinstance(body, JSONResponse):
            return body
        key, early = self._replay(request, f"refunds:{payment['id']}", body)
        if early is not None:
            return early
        if payment["status"] != "succeeded":
            return _error(
                409, "invalid_state", f"A {payment['status']} payment cannot be refunded."
            )
        remaining = int(payment["amount"]) - int(payment["amount_refunded"])
        amount = body.get("amount", remaining)
        if not _positive_int(amount) or amount > remaining:
            return _error(
                400,
                "invalid_request",
                f"amount must be an integer between 1 and {remaining}.",
                "amount",
            )
        reason = body.get("reason")
        if reason is not None and reason not in REFUND_REASONS:
            return _error(400, "invalid_request", "Unknown refund reason.", "reason")
        refund = {
            "id": f"re_{secrets.token_hex(8)}",
            "payment_id": payment["id"],
            "status": self.refund_status,
            "amount": amount,
            "currency": payment["currency"],
            "reason": reason,
            "created_at": _now(),
        }
        self.state.refunds[refund["id"]] = refund
        payment["amount_refunded"] = int(payment["amount_refunded"]) + amount
        payment["updated_at"] = _now()
        self._remember(f"refunds:{payment['id']}", key, body, 201, refund)
        return JSONResponse(refund, status_code=201)

    async def _get_refund(self, request: Request) -> Response:
        if (denied := self._denied(request)) is not None:
            return denied
        refund = self.state.refunds.get(request.path_params["refund_id"])
        if refund is None or refund["payment_id"] != request.path_params["payment_id"]:
            return _error(404, "not_found", "No such refund.")
        return JSONResponse(refund)

    def settle_refund(self, refund_id: str, status: str = "succeeded") -> None:
        """Move a pending refund to a final status (as the real gateway would later), and
        queue its webhook; a failed refund no longer counts in `amount_refunded`."""
        refund = self.state.refunds[refund_id]
        if refund["status"] in FINAL_STATUSES:
            raise ValueError(f"refund {refund_id} is already {refund['status']}")
        refund["status"] = status
        if status == "failed":
            payment = self.state.payments[refund["payment_id"]]
            payment["amount_refunded"] = int(payment["amount_refunded"]) - int(refund["amount"])
            payment["updated_at"] = _now()
        self.queue_webhook(f"refund.{status}", dict(refund))

    def refund_at_gateway(self, payment_id: str, amount: int) -> dict[str, Any]:
        """A refund made at the gateway itself (its dashboard), and its webhook."""
        payment = self.state.payments[payment_id]
        refund = {
            "id": f"re_{secrets.token_hex(8)}",
            "payment_id": payment_id,
            "status": "succeeded",
            "amount": amount,
            "currency": payment["currency"],
            "reason": "requested_by_customer",
            "created_at": _now(),
        }
        self.state.refunds[refund["id"]] = refund
        payment["amount_refunded"] = int(payment["amount_refunded"]) + amount
        self.queue_webhook("refund.succeeded", dict(refund))
        return refund

    def dispute(
        self, payment_id: str, status: str = "open", *, dispute_id: str | None = None
    ) -> WebhookDelivery:
        """A chargeback on the payment: `open`, or closed `won` / `lost`."""
        payment = self.state.payments[payment_id]
        data = {
            "id": dispute_id or f"dp_{secrets.token_hex(8)}",
            "payment_id": payment_id,
            "status": status,
            "reason": "fraudulent",
            "amount": payment["amount"],
            "currency": payment["currency"],
            "created_at": _now(),
        }
        return self.queue_webhook("dispute.opened" if status == "open" else "dispute.closed", data)

    # --- webhooks -------------------------------------------------------------------

    def queue_webhook(self, event_type: str, data: dict[str, Any]) -> WebhookDelivery:
        event = {
            "id": f"evt_{secrets.token_hex(8)}",
            "type": event_type,
            "created_at": _now(),
            "data": data,
        }
        delivery = self.sign_event(event)
        self.state.outbox.append(delivery)
        return delivery

    def sign_event(self, event: dict[str, Any], *, at: datetime | None = None) -> WebhookDelivery:
        """The event's body and Standard Webhooks headers, signed with `webhook_secret`."""
        body = json.dumps(event, separators=(",", ":"))
        timestamp = at or datetime.now(UTC)
        secrets_used = [self.webhook_secret, *filter(None, [self.previous_webhook_secret])]
        signature = " ".join(Webhook(s).sign(event["id"], timestamp, body) for s in secrets_used)
        headers = {
            "content-type": "application/json",
            "webhook-id": str(event["id"]),
            "webhook-timestamp": str(int(timestamp.timestamp())),
            "webhook-signature": signature,
        }
        return WebhookDelivery(event=event, body=body.encode(), headers=headers)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _validate_payment(body: dict[str, Any]) -> JSONResponse | None:
    if not _positive_int(body.get("amount")):
        return _error(400, "invalid_request", "amount must be a positive integer.", "amount")
    currency = body.get("currency")
    if not (isinstance(currency, str) and len(currency) == 3 and currency.isupper()):
        return _error(
            400, "invalid_request", "currency must be an ISO 4217 code like USD.", "currency"
        )
    for name in ("payment_method", "reference"):
        if not isinstance(body.get(name), str) or not body[name]:
            return _error(400, "invalid_request", f"{name} is required.", name)
    description = body.get("description")
    if description is not None and (not isinstance(description, str) or len(description) > 255):
        return _error(400, "invalid_request", "description is too long.", "description")
    return_url = body.get("return_url")
    if return_url is not None and (
        not isinstance(return_url, str) or urlsplit(return_url).scheme not in ("http", "https")
    ):
        return _error(400, "invalid_request", "return_url must be an http(s) URL.", "return_url")
    metadata = body.get("metadata")
    if metadata is not None and not (
        isinstance(metadata, dict)
        and len(metadata) <= 20
        and all(
            isinstance(k, str) and isinstance(v, str) and len(v) <= 500 for k, v in metadata.items()
        )
    ):
        return _error(400, "invalid_request", "metadata must map strings to strings.", "metadata")
    return None


def _token_outcome(token: str) -> tuple[SandboxOutcome | None, str | None]:
    if token == "tok_visa":
        return SandboxOutcome.SUCCEEDED, None
    if not token.startswith("tok_"):
        return None, None
    card = sandbox_card(token.removeprefix("tok_"))
    if card is None:
        return None, None
    return card.outcome, card.decline_code


def _with_query(url: str, payment_id: str) -> str:
    parts = urlsplit(url)
    extra = urlencode({"payment_id": payment_id})
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit(parts._replace(query=query))
