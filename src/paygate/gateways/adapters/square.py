"""Square, through the official SDK's `AsyncSquare` client.

Two ways to pay:

- DIRECT: the payment page tokenizes the card with Square's Web Payments SDK and paygate
  charges the nonce: POST /v2/payments (`payments.create`, autocomplete). The payment is
  final at once; `gateway_reference` is the Square PAYMENT id.
- HOSTED: a Square payment link (quick pay): POST /v2/online-checkout/payment-links. The
  customer pays on Square's page and comes back to `redirect_url` (Square appends
  `orderId`). `gateway_reference` is the link's ORDER id: the order's tenders name the
  payment once it is paid, and Square's payment webhooks carry the same order id.

Every create carries the attempt's key as `idempotency_key`: Square answers a repeated key
with what the first request made, so a create that timed out is resolved by sending it
again (`fetch_payment(request, None)`) without a second charge.

Refunds take either kind of reference: an order id is resolved to its tender's payment id.
Square answers a refund PENDING first: `fetch_refund` reads it again (GET /v2/refunds/{id}),
or, when the refund call timed out, re-sends it with the same idempotency key.

The adapter's parts: square_spec.py (the configuration fields), square_calls.py (the SDK
calls), square_answers.py (Square's payments, refunds and errors in paygate's terms).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from square import AsyncSquare
from square.core.api_error import ApiError

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    GatewayTypeSpec,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import (
    GatewayDeclined,
    GatewayMisconfigured,
    GatewayRejected,
)
from paygate.gateways.adapters.base_http import call_gateway
from paygate.gateways.adapters.square_answers import (
    _DeclinedPayment,
    _describe,
    _hosted,
    _map_api_error,
    _refund_answer,
)
from paygate.gateways.adapters.square_calls import _NO_RETRIES, SquareCalls
from paygate.gateways.adapters.square_spec import SPEC


class SquareAdapter(SquareCalls):
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        location_id = self.config.value("location_id")

        async def send() -> ConnectionCheck:
            async with self._client() as client:
                try:
                    response = await client.locations.list(request_options=_NO_RETRIES)
                except ApiError as exc:
                    raise _map_api_error(exc) from None
            locations = response.locations or []
            found = next((loc for loc in locations if loc.id == location_id), None)
            if found is None:
                known = ", ".join(_describe(loc) for loc in locations) or "no locations"
                raise GatewayMisconfigured(
                    f"Location id {location_id} was not found in this Square account; "
                    f"it has: {known}."
                )
            if found.status is not None and found.status != "ACTIVE":
                raise GatewayMisconfigured(
                    f"Square location {_describe(found)} is {found.status}: "
                    "payments need an active location."
                )
            return ConnectionCheck(message=f"Connected to Square: location {_describe(found)}.")

        return await call_gateway(self.config, "test_connection", send)

    # --- payments ---------------------------------------------------------------------

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        if _hosted(request):
            return await self._create_link(request, "create_payment")
        result = await self._charge(request, "create_payment")
        if result.decline is not None:
            # A payment Square answered as FAILED without an error: still a decline.
            raise GatewayDeclined(
                result.decline.message,
                decline_code=result.decline.code.value,
                hard=result.decline.hard,
                gateway_code=result.decline.gateway_code,
            )
        return result

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        if _hosted(request):
            came_back_for = return_params.get("orderId")
            if came_back_for and came_back_for != gateway_reference:
                raise GatewayRejected(
                    "The customer came back from Square for another order than this payment's.",
                    gateway_code="ORDER_MISMATCH",
                )
            return await self._order_outcome(gateway_reference, "complete_payment")
        # A card payment is final when created: read it again, never trusting the browser.
        return await self._get_payment(gateway_reference, "complete_payment")

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        if gateway_reference is not None:
            if _hosted(request):
                return await self._order_outcome(gateway_reference, "fetch_payment")
            return await self._get_payment(gateway_reference, "fetch_payment")
        # The create timed out: the same idempotency key answers what it made.
        if _hosted(request):
            link = await self._create_link(request, "fetch_payment")
            return await self._order_outcome(link.gateway_reference, "fetch_payment", link)
        try:
            return await self._charge(request, "fetch_payment")
        except _DeclinedPayment as declined:
            return declined.result

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        # A payment link stays payable at Square until it is paid or deleted, and paygate
        # keeps only its order id: it cannot be withdrawn from here, so it stays open.
        raise GatewayRejected(
            "A Square payment link cannot be withdrawn; it stays open until it is paid.",
            gateway_code="NOT_CANCELABLE",
        )

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        payment_id = await self._payment_id_for_refund(request.gateway_payment_reference)
        return await self._refund(request, payment_id, "refund_payment")

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        if gateway_reference is None:
            # The refund call timed out: the same idempotency key (and the same request)
            # answers the refund it made, in its latest state, or makes it once.
            payment_id = await self._payment_id_for_refund(request.gateway_payment_reference)
            return await self._refund(request, payment_id, "fetch_refund")

        async def action(client: AsyncSquare) -> RefundResult:
            response = await client.refunds.get(gateway_reference, request_options=_NO_RETRIES)
            if response.refund is None:
                raise GatewayRejected("Square's answer held no refund.")
            return _refund_answer(response.refund)

        return await self._call(
            "fetch_refund",
            action,
            summary={"refund_id": gateway_reference, "reference": request.reference},
            permission=("read payments", "PAYMENTS_READ"),
        )

    async def _refund(
        self, request: RefundRequest, payment_id: str, operation: str
    ) -> RefundResult:
        async def action(client: AsyncSquare) -> RefundResult:
            response = await client.refunds.refund_payment(
                idempotency_key=request.idempotency_key,
                payment_id=payment_id,
                amount_money={"amount": request.amount, "currency": request.currency},
                **({"reason": request.reason[:192]} if request.reason else {}),
                request_options=_NO_RETRIES,
            )
            if response.refund is None:
                raise GatewayRejected("Square's answer held no refund.")
            return _refund_answer(response.refund)

        summary = {
            "reference": request.reference,
            "idempotency_key": request.idempotency_key,
            "payment_id": payment_id,
            "amount": request.amount,
            "currency": request.currency,
        }
        return await self._call(
            operation,
            action,
            summary=summary,
            permission=("refund payments", "PAYMENTS_WRITE"),
        )
