"""Stripe, through the official SDK's `StripeClient` and its async methods over httpx.

Two ways to pay, chosen by the request:

- direct (`request.payment_method` set): a PaymentIntent created and confirmed in one
  call with a `pm_...` (or a PaymentMethod made from a Stripe.js `tok_...`); 3-D Secure
  comes back as `requires_action` with the client secret the page hands to
  `stripe.confirmCardPayment`, and `complete_payment` re-reads the PaymentIntent.
- hosted (no payment method): a Stripe Checkout session; the customer is redirected to
  its URL and comes back to `return_url?session_id=cs_...`.

Idempotency: every POST carries the attempt's key (Stripe replays the first answer for
24 hours). `fetch_payment(request, None)` first looks for the PaymentIntent tagged
`metadata.paygate_attempt=<key>` (a read, safe against emulators that ignore
Idempotency-Key, such as localstripe), and only when none exists re-issues the very
same create with the same key. Refunds likewise: each is tagged
`metadata.paygate_refund=<refund id>`; `fetch_refund` retrieves it by id, or without one
lists the PaymentIntent's refunds for the tag and only then re-issues the create.
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, ClassVar, TypeVar, cast

import httpx
import stripe
from stripe.params import (
    PaymentIntentCreateParams,
    PaymentIntentListParams,
    PaymentMethodCreateParams,
    RefundCreateParams,
    RefundListParams,
)
from stripe.params.checkout import SessionCreateParams

from paygate.gateways.adapters.base import (
    DECLINE_MESSAGES,
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
    PaymentFlow,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import call_gateway, record_response
from paygate.security.ssrf import GuardedTransport, OutboundRefused, Resolver

T = TypeVar("T")

STRIPE_API_BASE_URL = "https://api.stripe.com"

# How the payment page takes a card for this gateway (read by the payment page).
PAYMENT_PAGE_FLOWS = ("elements", "checkout")

# fetch_payment without a reference looks through at most this many recent PaymentIntents.
_FIND_PAGE_SIZE = 100
_FIND_MAX_PAGES = 10

SPEC = GatewayTypeSpec(
    type=GatewayType.STRIPE,
    display_name="Stripe",
    description="Card payments through your Stripe account.",
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="secret_key",
            label="Secret key",
            kind=FieldKind.SECRET,
            help=(
                "In the Stripe Dashboard, open Developers > API keys and reveal the secret key "
                "(sk_test_... in test mode, sk_live_... in live mode). A restricted key "
                "(rk_...) works too if it may read the balance and write PaymentIntents "
                "and refunds."
            ),
            prefixes={
                Environment.TEST: ("sk_test_", "rk_test_"),
                Environment.LIVE: ("sk_live_", "rk_live_"),
            },
        ),
        FieldSpec(
            name="publishable_key",
            label="Publishable key",
            help=(
                "On the same Developers > API keys page: the publishable key "
                "(pk_test_... or pk_live_...). The payment page uses it in the browser."
            ),
            prefixes={Environment.TEST: ("pk_test_",), Environment.LIVE: ("pk_live_",)},
        ),
        FieldSpec(
            name="webhook_secret",
            label="Webhook signing secret",
            kind=FieldKind.SECRET,
            # Optional until paygate receives this gateway's webhooks (a later release).
            required=False,
            help=(
                "In Developers > Webhooks, open the endpoint that points at paygate and reveal "
                "its signing secret (whsec_...). Optional: needed only to verify webhooks."
            ),
            prefixes={Environment.TEST: ("whsec_",), Environment.LIVE: ("whsec_",)},
        ),
        FieldSpec(
            name="payment_page_flow",
            label="Payment page",
            kind=FieldKind.CHOICE,
            required=False,
            choices=PAYMENT_PAGE_FLOWS,
            help=(
                "elements (the default): the customer types the card on paygate's payment "
                "page, in Stripe.js fields. checkout: the customer is sent to a Stripe "
                "Checkout page hosted by Stripe and comes back to paygate."
            ),
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://api.stripe.com. Set it only to go through a "
                "proxy or a Stripe emulator."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: STRIPE_API_BASE_URL,
        Environment.LIVE: STRIPE_API_BASE_URL,
    },
)


# --- declines ------------------------------------------------------------------------
# Stripe's `decline_code` (or the error's `code` when there is none) -> paygate's code and
# whether the decline is hard. Soft: Stripe's next step is to try again (later, or after
# the customer authenticates); hard: the customer must use another card or call the bank.
_DECLINES: dict[str, tuple[DeclineCode, bool]] = {
    "card_declined": (DeclineCode.CARD_DECLINED, True),
    "generic_decline": (DeclineCode.CARD_DECLINED, True),
    "do_not_honor": (DeclineCode.CARD_DECLINED, True),
    "call_issuer": (DeclineCode.CARD_DECLINED, True),
    "card_not_supported": (DeclineCode.CARD_DECLINED, True),
    "currency_not_supported": (DeclineCode.CARD_DECLINED, True),
    "incorrect_number": (DeclineCode.CARD_DECLINED, True),
    "invalid_number": (DeclineCode.CARD_DECLINED, True),
    "invalid_account": (DeclineCode.CARD_DECLINED, True),
    "new_account_information_available": (DeclineCode.CARD_DECLINED, True),
    "no_action_taken": (DeclineCode.CARD_DECLINED, True),
    "not_permitted": (DeclineCode.CARD_DECLINED, True),
    "restricted_card": (DeclineCode.CARD_DECLINED, True),
    "revocation_of_authorization": (DeclineCode.CARD_DECLINED, True),
    "revocation_of_all_authorizations": (DeclineCode.CARD_DECLINED, True),
    "service_not_allowed": (DeclineCode.CARD_DECLINED, True),
    "stop_payment_order": (DeclineCode.CARD_DECLINED, True),
    "transaction_not_allowed": (DeclineCode.CARD_DECLINED, True),
    "card_velocity_exceeded": (DeclineCode.CARD_DECLINED, False),
    "withdrawal_count_limit_exceeded": (DeclineCode.CARD_DECLINED, False),
    "insufficient_funds": (DeclineCode.INSUFFICIENT_FUNDS, False),
    "expired_card": (DeclineCode.EXPIRED_CARD, True),
    "invalid_expiry_month": (DeclineCode.EXPIRED_CARD, True),
    "invalid_expiry_year": (DeclineCode.EXPIRED_CARD, True),
    "incorrect_cvc": (DeclineCode.INCORRECT_CVC, True),
    "invalid_cvc": (DeclineCode.INCORRECT_CVC, True),
    "processing_error": (DeclineCode.PROCESSING_ERROR, False),
    "try_again_later": (DeclineCode.PROCESSING_ERROR, False),
    "issuer_not_available": (DeclineCode.PROCESSING_ERROR, False),
    "reenter_transaction": (DeclineCode.PROCESSING_ERROR, False),
    "approve_with_id": (DeclineCode.PROCESSING_ERROR, False),
    "fraudulent": (DeclineCode.FRAUD_SUSPECTED, True),
    "stolen_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "lost_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "pickup_card": (DeclineCode.FRAUD_SUSPECTED, True),
    "merchant_blacklist": (DeclineCode.FRAUD_SUSPECTED, True),
    "security_violation": (DeclineCode.FRAUD_SUSPECTED, True),
    "highest_risk_level": (DeclineCode.FRAUD_SUSPECTED, True),
    "authentication_required": (DeclineCode.AUTHENTICATION_FAILED, False),
    "payment_intent_authentication_failure": (DeclineCode.AUTHENTICATION_FAILED, False),
    "authentication_not_handled": (DeclineCode.AUTHENTICATION_FAILED, False),
}


def stripe_decline(stripe_code: str | None) -> Decline:
    """paygate's reading of a Stripe decline code (unknown codes: a hard card_declined)."""
    code, hard = _DECLINES.get(stripe_code or "", (DeclineCode.CARD_DECLINED, True))
    return Decline(code=code, message=DECLINE_MESSAGES[code], hard=hard, gateway_code=stripe_code)


class _StripeDeclined(GatewayDeclined):
    """A decline, with the PaymentIntent Stripe names in the error when it names one."""

    def __init__(self, decline: Decline, *, payment_intent: str | None) -> None:
        super().__init__(
            decline.message,
            decline_code=decline.code.value,
            hard=decline.hard,
            gateway_code=decline.gateway_code,
        )
        self.payment_intent = payment_intent


def _declined(decline: Decline, payment_intent: str | None = None) -> _StripeDeclined:
    return _StripeDeclined(decline, payment_intent=payment_intent)


class _GuardedHTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, connecting through the SSRF guard (security/ssrf.py).

    stripe-python builds its own httpx.AsyncClient; a live gateway's is replaced by one whose
    transport checks the address at connection time, as every other adapter's client does.
    """

    def __init__(self, timeout: float, resolver: Resolver, *, require_https: bool) -> None:
        super().__init__(timeout=timeout)
        verify = ssl.create_default_context(cafile=stripe.ca_bundle_path)
        inner = httpx.AsyncHTTPTransport(verify=verify)
        guard = GuardedTransport(inner, resolver=resolver, require_https=require_https)
        self._client_async = httpx.AsyncClient(transport=guard)


_HTTP_CLIENTS: weakref.WeakKeyDictionary[
    asyncio.AbstractEventLoop,
    dict[tuple[str, float, tuple[Resolver, bool] | None], stripe.HTTPXClient],
] = weakref.WeakKeyDictionary()


def _shared_http(config: AdapterConfig, base_url: str) -> stripe.HTTPXClient:
    """One httpx client per (event loop, base URL, timeout, guard), kept for the process's life.

    An httpx client belongs to the loop it was first used on, hence the per-loop table (a
    test suite runs many loops); it carries no API key, so companies never share state.
    A live gateway's client checks every address it connects to (SSRF).
    """
    clients = _HTTP_CLIENTS.setdefault(asyncio.get_running_loop(), {})
    live = config.environment is Environment.LIVE
    guarded = config.guarded
    key = (base_url, config.timeout_seconds, (config.resolver, live) if guarded else None)
    client = clients.get(key)
    if client is None:
        client = clients[key] = (
            _GuardedHTTPXClient(config.timeout_seconds, config.resolver, require_https=live)
            if guarded
            else stripe.HTTPXClient(timeout=config.timeout_seconds)
        )
    return client


# --- the adapter ---------------------------------------------------------------------


class StripeAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    @asynccontextmanager
    async def _stripe(self) -> AsyncIterator[stripe.StripeClient]:
        """A StripeClient for this company's key, over the process's shared httpx client."""
        base = self.config.api_base_url(SPEC)
        # One StripeClient per call: the key belongs to one company (never stripe.api_key).
        # Only the connection pool is shared (per event loop, base URL and timeout): it
        # holds no tenant state, and reusing its connections saves a TCP/TLS handshake.
        yield stripe.StripeClient(
            self.config.value("secret_key"),
            base_addresses={"api": base},
            http_client=_shared_http(self.config, base),
            # Retries are the payment layer's decision, not the SDK's.
            max_network_retries=0,
        )

    async def _call(
        self,
        operation: str,
        summary: Mapping[str, Any],
        fn: Callable[[], Awaitable[T]],
        describe: Callable[[T], Mapping[str, Any]],
    ) -> T:
        """One Stripe call through call_gateway, its answer recorded (redacted)."""

        async def send() -> T:
            try:
                result = await fn()
            except stripe.StripeError as exc:
                record_response(exc.http_status, _error_summary(exc))
                raise _map_stripe_error(exc, self.config, operation) from None
            record_response(_http_status(result), describe(result))
            return result

        return await call_gateway(self.config, operation, send, request_summary=summary)

    # --- test connection -------------------------------------------------------------

    async def test_connection(self) -> ConnectionCheck:
        async def send() -> ConnectionCheck:
            async with self._stripe() as client:
                try:
                    balance = await client.v1.balance.retrieve_async()
                except stripe.StripeError as exc:
                    raise _map_stripe_error(exc, self.config) from None
            currencies = _currencies(balance.available)
            if not currencies:
                return ConnectionCheck(message="Connected to Stripe: the balance is empty.")
            return ConnectionCheck(
                message=f"Connected to Stripe: balance available in {', '.join(currencies)}."
            )

        return await call_gateway(self.config, "test_connection", send)

    # --- payments --------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        if _is_hosted(request):
            async with self._stripe() as client:
                session = await self._create_session(client, request)
            return _session_result(session)
        async with self._stripe() as client:
            intent = await self._create_intent(client, request)
        result = _intent_result(intent)
        if result.decline is not None:
            raise _declined(result.decline, intent.id)
        return result

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        # The browser's return parameters are never trusted: read the state from Stripe.
        async with self._stripe() as client:
            return await self._read(client, gateway_reference, "complete_payment")

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        async with self._stripe() as client:
            if gateway_reference:
                return await self._read(client, gateway_reference, "fetch_payment")
            if _is_hosted(request):
                # A session charges nothing by itself: re-issuing the create with the same
                # key replays the first session (or opens the one that never arrived).
                return _session_result(await self._create_session(client, request))
            found = await self._find_by_attempt(client, request.idempotency_key)
            if found is not None:
                return _intent_result(found)
            # Nothing carries this attempt's tag: the create never reached Stripe (or is
            # still running there). The same create with the same key charges at most once.
            try:
                return _intent_result(await self._create_intent(client, request))
            except _StripeDeclined as declined:
                intent: stripe.PaymentIntent | None
                if declined.payment_intent:
                    intent = await self._retrieve_intent(
                        client, declined.payment_intent, "fetch_payment"
                    )
                else:
                    intent = await self._find_by_attempt(client, request.idempotency_key)
                if intent is None:
                    raise
                return _intent_result(intent)

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        async with self._stripe() as client:
            try:
                if gateway_reference.startswith("cs_"):
                    session = await self._call(
                        "cancel_payment",
                        {"checkout_session": gateway_reference},
                        lambda: client.v1.checkout.sessions.expire_async(gateway_reference),
                        _session_summary,
                    )
                    return _session_result(session)
                intent = await self._call(
                    "cancel_payment",
                    {"payment_intent": gateway_reference},
                    lambda: client.v1.payment_intents.cancel_async(gateway_reference),
                    _intent_summary,
                )
                return _intent_result(intent)
            except GatewayRejected:
                # Stripe refuses to cancel what already moved on (paid, say): read it.
                return await self._read(client, gateway_reference, "fetch_payment")

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        async with self._stripe() as client:
            payment_intent = await self._refund_intent(client, request, "refund_payment")
            return _refund_result(
                await self._create_refund(client, request, payment_intent, "refund_payment")
            )

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        async with self._stripe() as client:
            if gateway_reference:
                refund = await self._call(
                    "fetch_refund",
                    {"refund": gateway_reference, "reference": request.reference},
                    lambda: client.v1.refunds.retrieve_async(gateway_reference),
                    _refund_summary,
                )
                return _refund_result(refund)
            payment_intent = await self._refund_intent(client, request, "fetch_refund")
            found = await self._find_refund(client, payment_intent, request.reference)
            if found is not None:
                return _refund_result(found)
            # No refund carries this tag: the create never reached Stripe. The same create
            # with the same key refunds at most once.
            return _refund_result(
                await self._create_refund(client, request, payment_intent, "fetch_refund")
            )

    async def _refund_intent(
        self, client: stripe.StripeClient, request: RefundRequest, operation: str
    ) -> str:
        """The PaymentIntent a refund is for (a Checkout session's, for a hosted payment)."""
        payment_intent = request.gateway_payment_reference
        if payment_intent.startswith("cs_"):
            session = await self._retrieve_session(client, payment_intent, operation)
            found = _id_of(session.payment_intent)
            if not found:
                raise GatewayRejected("The Stripe Checkout session has no payment to refund.")
            payment_intent = found
        return payment_intent

    async def _create_refund(
        self,
        client: stripe.StripeClient,
        request: RefundRequest,
        payment_intent: str,
        operation: str,
    ) -> stripe.Refund:
        # Tagged with paygate's refund id, so fetch_refund can find it by a read.
        metadata = {"paygate_refund": request.reference}
        if request.reason:
            # Stripe's `reason` parameter is not sent: localstripe refuses it.
            metadata["paygate_reason"] = request.reason
        params: RefundCreateParams = {
            "payment_intent": payment_intent,
            "amount": request.amount,
            "metadata": metadata,
        }
        return await self._call(
            operation,
            {
                "payment_intent": payment_intent,
                "amount": request.amount,
                "currency": request.currency,
                "reference": request.reference,
                "idempotency_key": request.idempotency_key,
            },
            lambda: client.v1.refunds.create_async(
                params, {"idempotency_key": request.idempotency_key}
            ),
            _refund_summary,
        )

    async def _find_refund(
        self, client: stripe.StripeClient, payment_intent: str, reference: str
    ) -> stripe.Refund | None:
        """The PaymentIntent's refund tagged `metadata.paygate_refund=<reference>`, if any."""
        starting_after: str | None = None
        for page_number in range(_FIND_MAX_PAGES):
            params: RefundListParams = {"payment_intent": payment_intent, "limit": _FIND_PAGE_SIZE}
            if starting_after:
                params["starting_after"] = starting_after
            page = await self._call(
                "find_refund",
                {"payment_intent": payment_intent, "reference": reference, "page": page_number + 1},
                partial(client.v1.refunds.list_async, params),
                lambda found: {"count": len(found.data), "has_more": bool(found.has_more)},
            )
            for refund in page.data:
                if _get(refund.metadata, "paygate_refund") == reference:
                    return refund
            if not page.has_more or not page.data:
                return None
            starting_after = page.data[-1].id
        return None

    # --- the calls -------------------------------------------------------------------

    async def _create_intent(
        self, client: stripe.StripeClient, request: PaymentRequest
    ) -> stripe.PaymentIntent:
        """Create and confirm a PaymentIntent in one call (localstripe answers 500 to a
        confirm carrying a payment method, and Stripe accepts both)."""
        token = request.payment_method or ""
        payment_method = token
        if token.startswith("tok_"):
            payment_method = await self._payment_method_from_token(client, request, token)
        typed: PaymentIntentCreateParams = {
            "amount": request.amount,
            "currency": request.currency.lower(),
            "payment_method": payment_method,
            "confirm": True,
            "metadata": _metadata(request),
        }
        # Cards only, so no redirect-based method needs a return_url (localstripe refuses
        # return_url and automatic_payment_methods). The SDK's types for its pinned API
        # version name this `allowed_payment_method_types`, which localstripe refuses.
        params = cast(PaymentIntentCreateParams, {**typed, "payment_method_types": ["card"]})
        return await self._call(
            "create_payment",
            {
                **_request_summary(request),
                "payment_method": "token" if token.startswith("tok_") else "payment_method",
                "confirm": True,
            },
            lambda: client.v1.payment_intents.create_async(
                params, {"idempotency_key": request.idempotency_key}
            ),
            _intent_summary,
        )

    async def _payment_method_from_token(
        self, client: stripe.StripeClient, request: PaymentRequest, token: str
    ) -> str:
        """A Stripe.js card token made into something a PaymentIntent can charge."""

        async def create() -> str:
            params: PaymentMethodCreateParams = {"type": "card", "card": {"token": token}}
            try:
                created = await client.v1.payment_methods.create_async(
                    params, {"idempotency_key": f"{request.idempotency_key}-pm"}
                )
                return created.id
            except stripe.InvalidRequestError as exc:
                # localstripe cannot make a PaymentMethod from a token (a bare 400 without
                # a code); a real Stripe error always has a code and is passed on.
                if exc.http_status != 400 or exc.code:
                    raise
            # The token's card (card_...) is charged directly, as Stripe's compatibility
            # layer allows for Card objects.
            found = await client.v1.tokens.retrieve_async(token)
            card = found.card
            if card is None:
                raise GatewayRejected("The Stripe token holds no card.")
            return card.id

        return await self._call(
            "create_payment_method",
            {"type": "card", "source": "token", "reference": request.reference},
            create,
            lambda pm: {"object": "card" if pm.startswith("card_") else "payment_method"},
        )

    async def _create_session(
        self, client: stripe.StripeClient, request: PaymentRequest
    ) -> stripe.checkout.Session:
        if not request.return_url:
            raise GatewayRejected("Stripe Checkout needs a return URL to send the customer back.")
        metadata = _metadata(request)
        params: SessionCreateParams = {
            "mode": "payment",
            "line_items": [
                {
                    "price_data": {
                        "currency": request.currency.lower(),
                        "unit_amount": request.amount,
                        "product_data": {
                            "name": request.description or f"Payment {request.reference}"
                        },
                    },
                    "quantity": 1,
                }
            ],
            "success_url": _with_session_placeholder(request.return_url),
            "cancel_url": request.cancel_url or request.return_url,
            "client_reference_id": request.reference,
            "metadata": metadata,
            "payment_intent_data": {"metadata": metadata},
        }
        if request.customer_email:
            params["customer_email"] = request.customer_email
        return await self._call(
            "create_payment",
            {**_request_summary(request), "flow": "checkout"},
            lambda: client.v1.checkout.sessions.create_async(
                params, {"idempotency_key": request.idempotency_key}
            ),
            _session_summary,
        )

    async def _read(
        self, client: stripe.StripeClient, gateway_reference: str, operation: str
    ) -> PaymentResult:
        if gateway_reference.startswith("cs_"):
            return _session_result(
                await self._retrieve_session(client, gateway_reference, operation)
            )
        return _intent_result(await self._retrieve_intent(client, gateway_reference, operation))

    async def _retrieve_intent(
        self, client: stripe.StripeClient, intent_id: str, operation: str
    ) -> stripe.PaymentIntent:
        return await self._call(
            operation,
            {"payment_intent": intent_id},
            lambda: client.v1.payment_intents.retrieve_async(intent_id),
            _intent_summary,
        )

    async def _retrieve_session(
        self, client: stripe.StripeClient, session_id: str, operation: str
    ) -> stripe.checkout.Session:
        return await self._call(
            operation,
            {"checkout_session": session_id},
            lambda: client.v1.checkout.sessions.retrieve_async(session_id),
            _session_summary,
        )

    async def _find_by_attempt(
        self, client: stripe.StripeClient, attempt: str
    ) -> stripe.PaymentIntent | None:
        """The PaymentIntent tagged with this attempt's key, among the recent ones.

        A list is read-only and strongly consistent (unlike Stripe's search API), so it
        is safe against emulators that ignore Idempotency-Key."""
        starting_after: str | None = None
        for page_number in range(_FIND_MAX_PAGES):
            params: PaymentIntentListParams = {"limit": _FIND_PAGE_SIZE}
            if starting_after:
                params["starting_after"] = starting_after
            page = await self._call(
                "find_payment",
                {"idempotency_key": attempt, "page": page_number + 1},
                partial(client.v1.payment_intents.list_async, params),
                lambda found: {"count": len(found.data), "has_more": bool(found.has_more)},
            )
            for intent in page.data:
                if _get(intent.metadata, "paygate_attempt") == attempt:
                    return intent
            if not page.has_more or not page.data:
                return None
            starting_after = page.data[-1].id
        return None


# --- results -------------------------------------------------------------------------


def _is_hosted(request: PaymentRequest) -> bool:
    return request.flow is PaymentFlow.HOSTED or not request.payment_method


def _metadata(request: PaymentRequest) -> dict[str, str]:
    return {"paygate_payment": request.reference, "paygate_attempt": request.idempotency_key}


def _with_session_placeholder(url: str) -> str:
    # Stripe fills in {CHECKOUT_SESSION_ID}: it must stay literal (not percent-encoded).
    separator = "&" if "?" in url else "?"
    return f"{url}{separator}session_id={{CHECKOUT_SESSION_ID}}"


def _intent_result(intent: stripe.PaymentIntent) -> PaymentResult:
    status = intent.status
    amount = intent.amount
    currency = (intent.currency or "").upper()

    def result(
        mapped: GatewayPaymentStatus,
        *,
        amount: int = amount,
        next_action: NextAction | None = None,
        decline: Decline | None = None,
    ) -> PaymentResult:
        return PaymentResult(
            gateway_reference=intent.id,
            status=mapped,
            amount=amount,
            currency=currency,
            next_action=next_action,
            decline=decline,
            raw_status=status,
        )

    if status == "succeeded":
        received = _get(intent, "amount_received")
        return result(
            GatewayPaymentStatus.SUCCEEDED,
            amount=received if isinstance(received, int) else amount,
        )
    if status == "requires_action":
        next_action = _get(intent, "next_action")
        if _get(next_action, "type") == "redirect_to_url":
            url = _get(_get(next_action, "redirect_to_url"), "url")
            return result(
                GatewayPaymentStatus.REQUIRES_ACTION,
                next_action=NextAction(type="redirect", redirect_url=url),
            )
        return result(
            GatewayPaymentStatus.REQUIRES_ACTION,
            next_action=NextAction(type="stripe_sdk", client_secret=intent.client_secret),
        )
    if status == "canceled":
        return result(GatewayPaymentStatus.CANCELED)
    if status == "requires_payment_method":
        error = _get(intent, "last_payment_error")
        code = _get(error, "decline_code") or _get(error, "code")
        if error is None:
            # No payment method and no error: the attempt was abandoned at Stripe.
            decline = Decline(
                code=DeclineCode.CARD_DECLINED,
                message=DECLINE_MESSAGES[DeclineCode.CARD_DECLINED],
                hard=False,
                gateway_code="requires_payment_method",
            )
        else:
            decline = stripe_decline(code)
        return result(GatewayPaymentStatus.FAILED, decline=decline)
    # processing, requires_capture, requires_confirmation: not final yet.
    return result(GatewayPaymentStatus.PROCESSING)


def _session_result(session: stripe.checkout.Session) -> PaymentResult:
    status = session.status or ""
    paid = session.payment_status
    if status == "complete":
        mapped = (
            GatewayPaymentStatus.SUCCEEDED
            if paid in ("paid", "no_payment_required")
            else GatewayPaymentStatus.PROCESSING
        )
        next_action = None
    elif status == "expired":
        mapped, next_action = GatewayPaymentStatus.CANCELED, None
    else:
        # Open: the customer has not paid yet (a declined card may be retried on the page).
        mapped = GatewayPaymentStatus.REQUIRES_ACTION
        next_action = NextAction(type="redirect", redirect_url=session.url)
    return PaymentResult(
        gateway_reference=session.id,
        status=mapped,
        amount=session.amount_total or 0,
        currency=(session.currency or "").upper(),
        next_action=next_action,
        raw_status=f"{status}/{paid}",
    )


_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "requires_action": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
    "canceled": GatewayRefundStatus.FAILED,
}


def _refund_result(refund: stripe.Refund) -> RefundResult:
    return RefundResult(
        gateway_reference=refund.id,
        status=_REFUND_STATUSES.get(refund.status or "", GatewayRefundStatus.PENDING),
        amount=refund.amount,
        currency=refund.currency.upper(),
        raw_status=refund.status or "",
    )


# --- redacted summaries: ids, amounts, statuses and codes only -----------------------


def _request_summary(request: PaymentRequest) -> dict[str, Any]:
    return {
        "reference": request.reference,
        "idempotency_key": request.idempotency_key,
        "amount": request.amount,
        "currency": request.currency,
    }


def _intent_summary(intent: stripe.PaymentIntent) -> dict[str, Any]:
    error = _get(intent, "last_payment_error")
    return {
        "id": intent.id,
        "status": intent.status,
        "amount": intent.amount,
        "currency": intent.currency,
        "latest_charge": _id_of(_get(intent, "latest_charge")),
        "next_action": _get(_get(intent, "next_action"), "type"),
        "last_payment_error": _get(error, "decline_code") or _get(error, "code"),
    }


def _session_summary(session: stripe.checkout.Session) -> dict[str, Any]:
    return {
        "id": session.id,
        "status": session.status,
        "payment_status": session.payment_status,
        "amount_total": session.amount_total,
        "currency": session.currency,
        "payment_intent": _id_of(session.payment_intent),
    }


def _refund_summary(refund: stripe.Refund) -> dict[str, Any]:
    return {
        "id": refund.id,
        "status": refund.status,
        "amount": refund.amount,
        "currency": refund.currency,
        "payment_intent": _id_of(_get(refund, "payment_intent")),
    }


def _error_summary(exc: stripe.StripeError) -> dict[str, Any]:
    # Never Stripe's message: an authentication error's message names part of the key.
    error = _error_body(exc)
    summary: dict[str, Any] = {
        "error_type": error.get("type"),
        "code": error.get("code") or exc.code,
        "decline_code": error.get("decline_code"),
        "param": error.get("param"),
    }
    payment_intent = error.get("payment_intent")
    if isinstance(payment_intent, dict):
        summary["payment_intent"] = payment_intent.get("id")
        summary["payment_intent_status"] = payment_intent.get("status")
    return {k: v for k, v in summary.items() if v is not None}


def _error_body(exc: stripe.StripeError) -> dict[str, Any]:
    """The `error` object of Stripe's error answer ({} when there is none)."""
    body = exc.json_body
    error = body.get("error") if isinstance(body, dict) else None
    return error if isinstance(error, dict) else {}


def _http_status(obj: Any) -> int:
    response = getattr(obj, "last_response", None)
    code = getattr(response, "code", None)
    return code if isinstance(code, int) else 200


def _get(obj: Any, key: str) -> Any:
    """A field of a StripeObject (or dict), None when absent."""
    if obj is None:
        return None
    if isinstance(obj, dict):
        return obj.get(key)
    try:
        return obj[key]
    except KeyError:
        return None
    except TypeError:
        return getattr(obj, key, None)


def _id_of(value: Any) -> str | None:
    """An expandable field's id, whether Stripe sent the id or the object."""
    if value is None or isinstance(value, str):
        return value
    found = _get(value, "id")
    return found if isinstance(found, str) else None


def _currencies(available: Any) -> list[str]:
    """Currencies of the balance's `available` funds (a list in Stripe, a dict in localstripe)."""
    entries: Iterable[Any]
    if isinstance(available, list):
        entries = available
    elif available is None:
        entries = ()
    else:
        entries = (available,)
    found: list[str] = []
    for entry in entries:
        # StripeObject exposes keys as attributes (it is not a dict in stripe >= 13).
        currency = (
            entry.get("currency") if isinstance(entry, dict) else getattr(entry, "currency", None)
        )
        if isinstance(currency, str) and currency.upper() not in found:
            found.append(currency.upper())
    return found


def _map_stripe_error(
    exc: stripe.StripeError, config: AdapterConfig, operation: str = "test_connection"
) -> GatewayError:
    """Turn an SDK error into the taxonomy. Stripe's own message is not reused: it may
    echo part of the key."""
    status = exc.http_status
    code = exc.code
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayMisconfigured(
            f"Stripe rejected the secret key (HTTP {status}): check that it is the "
            f"{config.environment.value} mode secret key of the right account and that it "
            "has not been rolled.",
            gateway_code=code,
        )
    if isinstance(exc, stripe.APIConnectionError):
        # The SDK wraps the httpx error; its type tells a timeout from a refused connection.
        cause = exc.__cause__
        if isinstance(cause, OutboundRefused):
            return GatewayMisconfigured(
                "paygate refused to call Stripe: its address points at a private address."
            )
        if isinstance(cause, httpx.TimeoutException):
            sent = not isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout)
            return GatewayTimeout(
                f"Stripe did not answer within {config.timeout_seconds:g} s.",
                request_sent=sent,
            )
        # The SDK does not retry (max_network_retries=0): a refused connection sent nothing.
        return GatewayUnavailable(
            "Stripe could not be reached (connection failed).",
            network=True,
            request_sent=not isinstance(cause, httpx.ConnectError),
        )
    if isinstance(exc, stripe.CardError):
        error = _error_body(exc)
        decline = stripe_decline(error.get("decline_code") or code)
        return _declined(decline, _id_of(error.get("payment_intent")))
    if isinstance(exc, stripe.RateLimitError):
        # Stripe does not act on a rate-limited request.
        return GatewayUnavailable(
            "Stripe is rate limiting requests (HTTP 429).", gateway_code=code, refused=True
        )
    if status == 409:
        # Another request with this idempotency key is still running at Stripe.
        return GatewayUnavailable(
            "Stripe is still processing a request with this idempotency key (HTTP 409).",
            gateway_code=code,
        )
    if status is None or status >= 500:
        return GatewayUnavailable(
            f"Stripe answered with a server error (HTTP {status}).", gateway_code=code
        )
    if status == 404 and operation == "test_connection":
        return GatewayMisconfigured(
            "Stripe answered 404 for the balance: check the API base URL.", gateway_code=code
        )
    if isinstance(exc, stripe.IdempotencyError):
        return GatewayRejected(
            f"Stripe refused to reuse the idempotency key for a different request (HTTP {status}).",
            gateway_code="idempotency_error",
        )
    if status == 404:
        return GatewayRejected(
            f"Stripe has no such object for {operation} (HTTP 404).", gateway_code=code
        )
    return GatewayRejected(f"Stripe refused the request (HTTP {status}).", gateway_code=code)
