"""The Stripe API for tests at one base URL: localstripe plus what it lacks.

localstripe has no Checkout and ignores `Idempotency-Key`. This emulator sits in front
of it and adds, following Stripe's API reference:

- `POST /v1/checkout/sessions` (mode=payment with `price_data` line items),
  `GET /v1/checkout/sessions/{id}`, `GET /v1/checkout/sessions` and
  `POST /v1/checkout/sessions/{id}/expire`;
- the hosted page at the session's `url` (`/c/pay/{id}`), with "Pay" and "Cancel"
  buttons: Pay creates and confirms a PaymentIntent on localstripe (`pm_card_visa`, or
  the card chosen in the page's select), marks the session complete and paid, and
  redirects to `success_url` with `{CHECKOUT_SESSION_ID}` filled in; Cancel redirects
  to `cancel_url` and leaves the session open, as Stripe does;
- Stripe's idempotency for every POST under /v1 (its own and the ones it forwards):
  the same key with the same parameters replays the first answer (with
  `Idempotent-Replayed: true`), different parameters answer 400 `idempotency_error`,
  a request while the first is still running answers 409;
- the webhook endpoints API (tests/fakes/stripe_webhooks.py), whose endpoints localstripe
  itself then delivers its signed events to;
- every other path is forwarded to localstripe unchanged.

Knobs: the shared `Knobs` act before anything is done (a delayed request that the
client gave up on is never processed); `answer_delay_seconds` delays the answer
*after* the request was processed, i.e. "the gateway did it, the answer came late".
`honour_idempotency = False` turns the idempotency layer off (localstripe's own
behaviour). `refund_status = "pending"` shows new refunds as pending (localstripe's all
succeed at once) until `complete_refunds()`, or until read with GET /v1/refunds/{id} when
`refund_completes_on_read` is set.
"""

from __future__ import annotations

import asyncio
import html
import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlencode

import httpx
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from tests.fakes.common import Emulator
from tests.fakes.stripe_faults import _HOP_HEADERS
from tests.fakes.stripe_webhooks import StripeWebhookEndpoints

SESSION_TTL_SECONDS = 24 * 3600
# Cards the hosted page offers (localstripe's test payment methods).
PAGE_CARDS = {
    "pm_card_visa": "Visa •••• 4242 (succeeds)",
    "pm_card_chargeCustomerFail": "Visa •••• 0341 (declined)",
}
_SESSION_PARAMS = {
    "mode",
    "line_items",
    "success_url",
    "cancel_url",
    "client_reference_id",
    "metadata",
    "payment_intent_data",
    "customer_email",
    "payment_method_types",
    "expires_at",
    "expand",
}


def stripe_error(
    status: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    code: str | None = None,
    param: str | None = None,
) -> JSONResponse:
    error: dict[str, Any] = {"type": error_type, "message": message}
    if code:
        error["code"] = code
    if param:
        error["param"] = param
    return JSONResponse({"error": error}, status_code=status)


def unflatten(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding (`a[b][0][c]=v`) back into nested dicts and lists."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+|\[\]", key)
        node: dict[str, Any] = root
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            if last:
                node[part] = value
            else:
                node = node.setdefault(part, {})
    return _lists(root)  # type: ignore[no-any-return]


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


@dataclass
class _Stored:
    fingerprint: str
    status: int = 0
    body: bytes = b""
    content_type: str = "application/json"
    done: asyncio.Event = field(default_factory=asyncio.Event)


class StripeCheckoutEmulator(Emulator):
    def __init__(self, upstream: str) -> None:
        super().__init__()
        self.upstream = upstream.rstrip("/")
        self.sessions: dict[str, dict[str, Any]] = {}
        # Session id -> the API key it was created with (the page pays with it).
        self._session_keys: dict[str, str] = {}
        self._idempotency: dict[tuple[str, str], _Stored] = {}
        self.answer_delay_seconds = 0.0
        self.honour_idempotency = True
        self.refund_status = "succeeded"
        self.refund_completes_on_read = False
        # Refunds this emulator shows as pending (localstripe's refunds all succeed at once).
        self.pending_refunds: set[str] = set()
        self.webhook_endpoints = StripeWebhookEndpoints(upstream)
        self.app: ASGIApp = self.wrap(self._handle)

    def reset(self) -> None:
        super().reset()
        self.sessions.clear()
        self._session_keys.clear()
        self._idempotency.clear()
        self.answer_delay_seconds = 0.0
        self.honour_idempotency = True
        self.refund_status = "succeeded"
        self.refund_completes_on_read = False
        self.pending_refunds.clear()
        self.webhook_endpoints.reset_sync()

    def complete_refunds(self) -> None:
        """Every refund shown as pending has succeeded, as Stripe says a little later."""
        self.pending_refunds.clear()

    def server_error_body(self, status: int) -> dict[str, Any]:
        return {
            "error": {
                "type": "api_error",
                "message": "An unknown error occurred, please try again.",
            }
        }

    # --- dispatch ---------------------------------------------------------------------

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        request = Request(scope, receive)
        body = await request.body()
        response = await self._respond(request, body)
        if self.answer_delay_seconds > 0:
            # Processed: only the answer is late (the client may be gone by then).
            await asyncio.sleep(self.answer_delay_seconds)
        await response(scope, receive, send)

    async def _respond(self, request: Request, body: bytes) -> Response:
        path = request.url.path
        if path.startswith("/c/pay/"):
            return await self._page(request, body, path.removeprefix("/c/pay/"))
        key = request.headers.get("idempotency-key")
        if request.method == "POST" and path.startswith("/v1/") and key and self.honour_idempotency:
            return await self._idempotent(request, body, key)
        return await self._route(request, body)

    async def _idempotent(self, request: Request, body: bytes, key: str) -> Response:
        scope_key = (request.headers.get("authorization", ""), key)
        fingerprint = json.dumps(
            [request.url.path, sorted(parse_qsl(body.decode(), keep_blank_values=True))]
        )
        stored = self._idempotency.get(scope_key)
        if stored is not None:
            if stored.fingerprint != fingerprint:
                return stripe_error(
                    400,
                    "Keys for idempotent requests can only be used with the same parameters "
                    "they were first used with.",
                    error_type="idempotency_error",
                )
            if not stored.done.is_set():
                return stripe_error(
                    409,
                    "There is currently another in-progress request using this Idempotent Key.",
                    error_type="idempotency_error",
                )
            return Response(
                stored.body,
                stored.status,
                headers={"Idempotent-Replayed": "true", "Idempotency-Key": key},
                media_type=stored.content_type,
            )
        stored = _Stored(fingerprint)
        self._idempotency[scope_key] = stored
        try:
            response = await self._route(request, body)
        except BaseException:
            del self._idempotency[scope_key]
            raise
        if response.status_code in (401, 409):
            # Never executed: nothing is saved for the key.
            del self._idempotency[scope_key]
        else:
            stored.status = response.status_code
            stored.body = bytes(response.body)
            stored.content_type = response.media_type or "application/json"
        stored.done.set()
        return response

    async def _route(self, request: Request, body: bytes) -> Response:
        path, method = request.url.path, request.method
        if path == "/v1/checkout/sessions" or path.startswith("/v1/checkout/sessions/"):
            api_key = _api_key(request)
            if api_key is None:
                return stripe_error(401, "Invalid API Key provided.")
            rest = path.removeprefix("/v1/checkout/sessions").strip("/")
            if not rest and method == "POST":
                return self._create_session(api_key, unflatten(_form(body)))
            if not rest and method == "GET":
                return self._list_sessions(unflatten(parse_qsl(request.url.query)))
            if rest and "/" not in rest and method == "GET":
                query = unflatten(parse_qsl(request.url.query))
                return await self._retrieve_session(api_key, rest, query)
            if rest.endswith("/expire") and method == "POST":
                return self._expire_session(rest.removesuffix("/expire"))
            return stripe_error(404, f"Unrecognized request URL ({method}: {path}).")
        if path == "/v1/webhook_endpoints" or path.startswith("/v1/webhook_endpoints/"):
            api_key = _api_key(request)
            if api_key is None:
                return stripe_error(401, "Invalid API Key provided.")
            rest = path.removeprefix("/v1/webhook_endpoints").strip("/")
            return await self.webhook_endpoints.route(method, rest, api_key, unflatten(_form(body)))
        if path == "/v1/refunds" or path.startswith("/v1/refunds/"):
            return self._refund_view(method, path, await self._forward(request, body))
        return await self._forward(request, body)

    def _refund_view(self, method: str, path: str, response: Response) -> Response:
        """localstripe's refund answer, with the refunds this emulator holds pending."""
        if response.status_code != 200:
            return response
        answer = json.loads(bytes(response.body))
        if method == "POST" and path == "/v1/refunds" and self.refund_status == "pending":
            self.pending_refunds.add(answer["id"])
        elif method == "GET" and path.startswith("/v1/refunds/") and self.refund_completes_on_read:
            self.pending_refunds.discard(answer.get("id", ""))
        for refund in answer.get("data", [answer]):
            if refund.get("id") in self.pending_refunds:
                refund["status"] = "pending"
        return JSONResponse(answer)

    # --- sessions ---------------------------------------------------------------------

    def _create_session(self, api_key: str, params: dict[str, Any]) -> Response:
        unknown = sorted(set(params) - _SESSION_PARAMS)
        if unknown:
            return stripe_error(
                400,
                f"Received unknown parameter: {unknown[0]}",
                code="parameter_unknown",
                param=unknown[0],
            )
        if params.get("mode") != "payment":
            return stripe_error(400, "This emulator supports mode=payment only.", param="mode")
        success_url = params.get("success_url")
        if not isinstance(success_url, str) or not success_url.startswith(("http://", "https://")):
            return stripe_error(400, "Not a valid URL", code="url_invalid", param="success_url")
        cancel_url = params.get("cancel_url")
        items = params.get("line_items")
        if not isinstance(items, list) or not items:
            return stripe_error(400, "line_items is required in payment mode.", param="line_items")
        currencies: set[str] = set()
        total = 0
        names: list[str] = []
        for index, item in enumerate(items):
            problem = _line_item_problem(item, index)
            if problem is not None:
                return problem
            price = item["price_data"]
            currencies.add(price["currency"].lower())
            total += int(price["unit_amount"]) * int(item.get("quantity", "1"))
            names.append(price["product_data"]["name"])
        if len(currencies) != 1:
            return stripe_error(400, "All line items must use the same currency.")
        session_id = f"cs_test_{secrets.token_urlsafe(30).replace('-', 'a').replace('_', 'b')}"
        now = int(time.time())
        metadata = params.get("metadata") or {}
        session: dict[str, Any] = {
            "id": session_id,
            "object": "checkout.session",
            "amount_subtotal": total,
            "amount_total": total,
            "cancel_url": cancel_url,
            "client_reference_id": params.get("client_reference_id"),
            "created": now,
            "currency": currencies.pop(),
            "customer_email": params.get("customer_email"),
            "expires_at": int(params.get("expires_at") or now + SESSION_TTL_SECONDS),
            "livemode": False,
            "metadata": metadata,
            "mode": "payment",
            "payment_intent": None,
            "payment_method_types": ["card"],
            "payment_status": "unpaid",
            "status": "open",
            "success_url": success_url,
            "url": f"{self.base_url}/c/pay/{session_id}",
            # Not part of Stripe's answer: what the page needs.
            "_payment_intent_metadata": (params.get("payment_intent_data") or {}).get("metadata")
            or {},
            "_names": names,
            "_last_error": None,
        }
        self.sessions[session_id] = session
        self._session_keys[session_id] = api_key
        return JSONResponse(_public(session))

    async def _retrieve_session(
        self, api_key: str, session_id: str, query: Mapping[str, Any]
    ) -> Response:
        session = self.sessions.get(session_id)
        if session is None:
            return stripe_error(
                404,
                f"No such checkout.session: '{session_id}'",
                code="resource_missing",
                param="session",
            )
        out = _public(session)
        expand = query.get("expand") or []
        if "payment_intent" in expand and session["payment_intent"]:
            async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
                answer = await client.get(
                    f"/v1/payment_intents/{session['payment_intent']}",
                    headers={"Authorization": f"Bearer {api_key}"},
                )
            out["payment_intent"] = answer.json()
        return JSONResponse(out)

    def _list_sessions(self, query: Mapping[str, Any]) -> Response:
        found = [
            _public(s)
            for s in reversed(self.sessions.values())
            if query.get("payment_intent") in (None, s["payment_intent"])
        ]
        limit = int(query.get("limit") or 10)
        return JSONResponse(
            {
                "object": "list",
                "url": "/v1/checkout/sessions",
                "has_more": len(found) > limit,
                "data": found[:limit],
            }
        )

    def _expire_session(self, session_id: str) -> Response:
        session = self.sessions.get(session_id)
        if session is None:
            return stripe_error(404, f"No such checkout.session: '{session_id}'")
        if session["status"] != "open":
            return stripe_error(400, "Only Checkout Sessions with a status of open can be expired.")
        session["status"] = "expired"
        session["url"] = None
        return JSONResponse(_public(session))

    # --- the hosted page ----------------------------------------------------------------

    async def _page(self, request: Request, body: bytes, session_id: str) -> Response:
        session = self.sessions.get(session_id)
        if session is None:
            return HTMLResponse("<h1>This checkout page does not exist.</h1>", status_code=404)
        if session["status"] != "open":
            return HTMLResponse(
                f"<h1>This checkout session is {html.escape(session['status'])}.</h1>",
                status_code=410,
            )
        if request.method == "GET":
            return HTMLResponse(_page_html(session))
        if request.method != "POST":
            return HTMLResponse("Method not allowed", status_code=405)
        form = dict(parse_qsl(body.decode()))
        if form.get("action") == "cancel":
            return RedirectResponse(session["cancel_url"] or session["success_url"], 303)
        card = form.get("card") or "pm_card_visa"
        if card not in PAGE_CARDS:
            return HTMLResponse("Unknown card", status_code=400)
        paid = await self._pay(session, card)
        if not paid:
            return HTMLResponse(_page_html(session), status_code=402)
        url = session["success_url"].replace("{CHECKOUT_SESSION_ID}", session["id"])
        return RedirectResponse(url, 303)

    async def _pay(self, session: dict[str, Any], card: str) -> bool:
        """Create and confirm the session's PaymentIntent on localstripe."""
        data: list[tuple[str, str]] = [
            ("amount", str(session["amount_total"])),
            ("currency", session["currency"]),
            ("payment_method", card),
            ("payment_method_types[0]", "card"),
            ("confirm", "true"),
        ]
        data += [(f"metadata[{k}]", v) for k, v in session["_payment_intent_metadata"].items()]
        api_key = self._session_keys[session["id"]]
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            answer = await client.post(
                "/v1/payment_intents",
                content=urlencode(data),
                headers={
                    "Authorization": f"Bearer {api_key}",
                    "Content-Type": "application/x-www-form-urlencoded",
                },
            )
        if answer.status_code != 200:
            error = answer.json().get("error", {})
            session["_last_error"] = error.get("message") or "The payment failed."
            return False
        intent = answer.json()
        session["payment_intent"] = intent["id"]
        if intent["status"] != "succeeded":
            session["_last_error"] = f"The payment is {intent['status']}."
            return False
        session["status"] = "complete"
        session["payment_status"] = "paid"
        session["url"] = None
        session["_last_error"] = None
        return True

    # --- everything else goes to localstripe ------------------------------------------

    async def _forward(self, request: Request, body: bytes) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_HEADERS}
        headers.pop("idempotency-key", None)
        async with httpx.AsyncClient(base_url=self.upstream, timeout=30) as client:
            upstream = await client.request(
                request.method,
                request.url.path,
                params=request.url.query,
                headers=headers,
                content=body,
            )
        out_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_HEADERS}
        out_headers.pop("content-encoding", None)
        return Response(upstream.content, upstream.status_code, headers=out_headers)


def _api_key(request: Request) -> str | None:
    """The secret key, accepted as localstripe does: any `sk_...` (a `pk_...` is refused)."""
    scheme, _, key = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not key.startswith("sk_") or len(key) <= 5:
        return None
    return key


def _form(body: bytes) -> list[tuple[str, str]]:
    return parse_qsl(body.decode(), keep_blank_values=True)


def _line_item_problem(item: Any, index: int) -> Response | None:
    param = f"line_items[{index}]"
    if not isinstance(item, dict) or not isinstance(item.get("price_data"), dict):
        return stripe_error(400, "Each line item needs price_data.", param=param)
    price = item["price_data"]
    currency = price.get("currency")
    amount = price.get("unit_amount")
    product = price.get("product_data")
    quantity = item.get("quantity", "1")
    if not isinstance(currency, str) or len(currency) != 3:
        return stripe_error(400, "Invalid currency.", param=f"{param}[price_data][currency]")
    if not isinstance(amount, str) or not amount.isdigit():
        return stripe_error(400, "Invalid integer.", param=f"{param}[price_data][unit_amount]")
    if not isinstance(product, dict) or not product.get("name"):
        return stripe_error(
            400, "Missing required param.", param=f"{param}[price_data][product_data][name]"
        )
    if not isinstance(quantity, str) or not quantity.isdigit() or int(quantity) < 1:
        return stripe_error(400, "Invalid quantity.", param=f"{param}[quantity]")
    return None


def _public(session: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in session.items() if not k.startswith("_")}


def _page_html(session: dict[str, Any]) -> str:
    amount = session["amount_total"]
    currency = html.escape(session["currency"].upper())
    names = ", ".join(html.escape(n) for n in session["_names"])
    options = "".join(
        f'<option value="{pm}">{html.escape(label)}</option>' for pm, label in PAGE_CARDS.items()
    )
    error = session["_last_error"]
    alert = f'<p role="alert" class="error">{html.escape(error)}</p>' if error else ""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Checkout</title></head>
<body>
<h1>Pay {amount} {currency}</h1>
<p>{names}</p>
{alert}
<form method="post" action="/c/pay/{session["id"]}">
  <label for="card">Card</label>
  <select id="card" name="card">{options}</select>
  <button type="submit" name="action" value="pay">Pay</button>
  <button type="submit" name="action" value="cancel">Cancel</button>
</form>
</body></html>
"""
