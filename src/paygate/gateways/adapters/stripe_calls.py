"""The Stripe API calls behind StripeAdapter, through the official SDK's StripeClient over
one shared httpx client per event loop (checked by the SSRF guard when the gateway is
guarded). Each call goes through call_gateway, its answer recorded (redacted).
"""

from __future__ import annotations

import asyncio
import ssl
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from functools import partial
from typing import Any, TypeVar, cast

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
    AdapterConfig,
    Environment,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
from paygate.gateways.adapters.base_http import call_gateway, record_response
from paygate.gateways.adapters.stripe_answers import (
    _error_summary,
    _get,
    _http_status,
    _id_of,
    _intent_result,
    _intent_summary,
    _map_stripe_error,
    _metadata,
    _refund_summary,
    _request_summary,
    _session_result,
    _session_summary,
    _with_session_placeholder,
)
from paygate.gateways.adapters.stripe_spec import SPEC
from paygate.security.ssrf import GuardedTransport, Resolver

T = TypeVar("T")


# fetch_payment without a reference looks through at most this many recent PaymentIntents.
_FIND_PAGE_SIZE = 100
_FIND_MAX_PAGES = 10


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


class StripeCalls:
    """The Stripe API calls behind StripeAdapter's methods, each one through call_gateway."""

    config: AdapterConfig

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
