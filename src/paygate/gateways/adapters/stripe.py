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

The adapter's parts: stripe_spec.py (the configuration fields), stripe_calls.py (the API
calls and the shared httpx client), stripe_answers.py (Stripe's answers and errors in
paygate's terms), stripe_declines.py (the decline-code map).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import stripe

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    GatewayTypeSpec,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
from paygate.gateways.adapters.base_http import call_gateway
from paygate.gateways.adapters.stripe_answers import (
    _currencies,
    _intent_result,
    _intent_summary,
    _is_hosted,
    _map_stripe_error,
    _refund_result,
    _refund_summary,
    _session_result,
    _session_summary,
)
from paygate.gateways.adapters.stripe_calls import StripeCalls
from paygate.gateways.adapters.stripe_declines import _declined, _StripeDeclined
from paygate.gateways.adapters.stripe_spec import SPEC


class StripeAdapter(StripeCalls):
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

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
