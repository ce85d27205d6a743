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

The adapter's parts: paypal_spec.py (the configuration fields), paypal_calls.py (the REST
calls and the OAuth token cache), paypal_answers.py (PayPal's bodies in paygate's terms).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, ClassVar

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayTypeSpec,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import GatewayDeclined, GatewayRejected
from paygate.gateways.adapters.base_http import call_gateway
from paygate.gateways.adapters.paypal_answers import (
    _decline_for,
    _last_capture,
    _order_result,
    _refund_result,
    _refundable_capture,
    _refunds,
    _refusal,
    _to_value,
)
from paygate.gateways.adapters.paypal_calls import (
    PayPalCalls,
    _NotCapturable,
    _remember_token,
    _token_key,
)
from paygate.gateways.adapters.paypal_spec import SPEC


class PayPalAdapter(PayPalCalls):
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
