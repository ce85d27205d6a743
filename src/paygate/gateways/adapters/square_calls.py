"""The Square SDK calls behind SquareAdapter (payments, payment links, orders), through
the official AsyncSquare client over paygate's own httpx client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, TypeVar

from square import AsyncSquare
from square.core.api_error import ApiError
from square.core.request_options import RequestOptions

from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayPaymentStatus,
    NextAction,
    PaymentRequest,
    PaymentResult,
)
from paygate.gateways.adapters.base_errors import GatewayError, GatewayRejected
from paygate.gateways.adapters.base_http import call_gateway, http_client, record_response
from paygate.gateways.adapters.square_answers import (
    _decline_from_errors,
    _DeclinedPayment,
    _error_code,
    _error_summary,
    _failed_payment,
    _map_api_error,
    _money,
    _payment_result,
    _payment_summary,
    _UnknownObject,
)
from paygate.gateways.adapters.square_spec import SPEC

T = TypeVar("T")


_TAKE_PAYMENTS = ("take payments", "PAYMENTS_WRITE")
# Retries are the payment layer's decision, not the SDK's.
_NO_RETRIES: RequestOptions = {"max_retries": 0}


class SquareCalls:
    """The Square SDK calls behind SquareAdapter's methods, each one through call_gateway."""

    config: AdapterConfig

    @asynccontextmanager
    async def _client(self) -> AsyncIterator[AsyncSquare]:
        base = self.config.api_base_url(SPEC)
        # Our own httpx client so it is closed after the call and uses our timeout.
        async with http_client(self.config, base_url=base) as http:
            yield AsyncSquare(
                token=self.config.value("access_token"),
                base_url=base,
                timeout=self.config.timeout_seconds,
                httpx_client=http,
            )

    async def _call(
        self,
        operation: str,
        action: Callable[[AsyncSquare], Awaitable[T]],
        *,
        summary: Mapping[str, Any],
        permission: tuple[str, str] = _TAKE_PAYMENTS,
        on_error: Callable[[ApiError], GatewayError] | None = None,
    ) -> T:
        """One SDK call through call_gateway; Square's errors become the taxonomy."""

        async def send() -> T:
            async with self._client() as client:
                try:
                    return await action(client)
                except ApiError as exc:
                    record_response(exc.status_code, _error_summary(exc))
                    if on_error is not None:
                        raise on_error(exc) from None
                    if exc.status_code == 404 and _error_code(exc) == "NOT_FOUND":
                        # Square's own 404 body: the object (payment, order) does not exist.
                        raise GatewayRejected(
                            "Square does not know this object.", gateway_code="NOT_FOUND"
                        ) from None
                    raise _map_api_error(exc, permission=permission) from None

        return await call_gateway(self.config, operation, send, request_summary=summary)

    async def _charge(self, request: PaymentRequest, operation: str) -> PaymentResult:
        """POST /v2/payments with the nonce; a decline raises _DeclinedPayment."""
        if not request.payment_method:
            raise GatewayRejected(
                "A Square card payment needs the card nonce from Square's Web Payments SDK.",
                gateway_code="MISSING_SOURCE_ID",
            )
        nonce = request.payment_method
        location_id = self.config.value("location_id")

        async def action(client: AsyncSquare) -> PaymentResult:
            response = await client.payments.create(
                source_id=nonce,
                idempotency_key=request.idempotency_key,
                amount_money={"amount": request.amount, "currency": request.currency},
                location_id=location_id,
                reference_id=request.reference[:40],
                autocomplete=True,
                **({"note": request.description[:500]} if request.description else {}),
                **(
                    {"buyer_email_address": request.customer_email}
                    if request.customer_email
                    else {}
                ),
                request_options=_NO_RETRIES,
            )
            if response.payment is None:
                raise GatewayRejected("Square's answer held no payment.")
            result = _payment_result(response.payment)
            record_response(200, _payment_summary(response.payment))
            return result

        def on_error(exc: ApiError) -> GatewayError:
            decline = _decline_from_errors(exc)
            if decline is None:
                return _map_api_error(exc, permission=_TAKE_PAYMENTS)
            payment = _failed_payment(exc)
            if payment is not None:
                failed = replace(_payment_result(payment), decline=decline)
            else:
                # Square names no payment: nothing was collected, so the amount is the one
                # the decline was about.
                failed = PaymentResult(
                    gateway_reference="",
                    status=GatewayPaymentStatus.FAILED,
                    amount=request.amount,
                    currency=request.currency,
                    decline=decline,
                    raw_status="FAILED",
                )
            return _DeclinedPayment(failed)

        summary = {
            "reference": request.reference,
            "idempotency_key": request.idempotency_key,
            "amount": request.amount,
            "currency": request.currency,
            "location_id": location_id,
            "source": "card_nonce",
        }
        return await self._call(operation, action, summary=summary, on_error=on_error)

    async def _create_link(self, request: PaymentRequest, operation: str) -> PaymentResult:
        """A Square payment link (quick pay) for the amount; REQUIRES_ACTION with its URL."""
        location_id = self.config.value("location_id")

        async def action(client: AsyncSquare) -> PaymentResult:
            checkout_options: dict[str, Any] = {}
            if request.return_url:
                checkout_options["redirect_url"] = request.return_url
            response = await client.checkout.payment_links.create(
                idempotency_key=request.idempotency_key,
                description=request.reference,
                quick_pay={
                    "name": (request.description or f"Payment {request.reference}")[:255],
                    "price_money": {"amount": request.amount, "currency": request.currency},
                    "location_id": location_id,
                },
                **({"checkout_options": checkout_options} if checkout_options else {}),
                payment_note=f"paygate {request.reference}"[:500],
                **(
                    {"pre_populated_data": {"buyer_email": request.customer_email}}
                    if request.customer_email
                    else {}
                ),
                request_options=_NO_RETRIES,
            )
            link = response.payment_link
            if link is None or not link.order_id or not link.url:
                raise GatewayRejected("Square's answer held no payment link.")
            orders = (
                response.related_resources.orders if response.related_resources else None
            ) or []
            order = next((o for o in orders if o.id == link.order_id), None)
            if order is None:
                raise GatewayRejected("Square's answer did not include the link's order.")
            amount, currency = _money(order.total_money)
            record_response(
                200,
                {
                    "payment_link_id": link.id,
                    "order_id": link.order_id,
                    "order_state": order.state,
                    "amount": amount,
                    "currency": currency,
                },
            )
            return PaymentResult(
                gateway_reference=link.order_id,
                status=GatewayPaymentStatus.REQUIRES_ACTION,
                amount=amount,
                currency=currency,
                next_action=NextAction(type="redirect", redirect_url=link.url),
                raw_status=str(order.state or ""),
            )

        summary = {
            "reference": request.reference,
            "idempotency_key": request.idempotency_key,
            "amount": request.amount,
            "currency": request.currency,
            "location_id": location_id,
            "flow": "payment_link",
        }
        return await self._call(
            operation,
            action,
            summary=summary,
            permission=("create payment links", "ORDERS_WRITE and PAYMENTS_WRITE"),
        )

    async def _get_payment(self, payment_id: str, operation: str) -> PaymentResult:
        async def action(client: AsyncSquare) -> PaymentResult:
            response = await client.payments.get(payment_id, request_options=_NO_RETRIES)
            if response.payment is None:
                raise GatewayRejected("Square's answer held no payment.")
            record_response(200, _payment_summary(response.payment))
            return _payment_result(response.payment)

        return await self._call(
            operation,
            action,
            summary={"payment_id": payment_id},
            permission=("read payments", "PAYMENTS_READ"),
        )

    async def _get_order(self, order_id: str, operation: str) -> Any:
        """The order, or None when Square does not know it."""

        async def action(client: AsyncSquare) -> Any:
            response = await client.orders.get(order_id, request_options=_NO_RETRIES)
            order = response.order
            if order is None:
                raise GatewayRejected("Square's answer held no order.")
            amount, currency = _money(order.total_money)
            record_response(
                200,
                {
                    "order_id": order.id,
                    "state": order.state,
                    "amount": amount,
                    "currency": currency,
                    "payment_ids": [t.payment_id or t.id for t in order.tenders or []],
                },
            )
            return order

        def on_error(exc: ApiError) -> GatewayError:
            if exc.status_code == 404 and _error_code(exc) == "NOT_FOUND":
                return _UnknownObject("Square does not know this order.", gateway_code="NOT_FOUND")
            return _map_api_error(exc, permission=("read orders", "ORDERS_READ"))

        try:
            return await self._call(
                operation, action, summary={"order_id": order_id}, on_error=on_error
            )
        except _UnknownObject:
            return None

    async def _order_outcome(
        self, order_id: str, operation: str, link: PaymentResult | None = None
    ) -> PaymentResult:
        """A payment link's order: paid (its tender's payment decides) or still waiting."""
        order = await self._get_order(order_id, operation)
        if order is None:
            raise GatewayRejected(
                f"Square does not know order {order_id}.", gateway_code="NOT_FOUND"
            )
        payment_ids = [t.payment_id or t.id for t in order.tenders or [] if t.payment_id or t.id]
        if payment_ids:
            paid = await self._get_payment(payment_ids[-1], operation)
            # The payment belongs to the order: the order stays the reference.
            return replace(paid, gateway_reference=order_id)
        amount, currency = _money(order.total_money)
        state = str(order.state or "")
        if state == "CANCELED":
            status = GatewayPaymentStatus.CANCELED
        else:  # DRAFT or OPEN without a tender: the customer has not paid (yet)
            status = GatewayPaymentStatus.REQUIRES_ACTION
        return PaymentResult(
            gateway_reference=order_id,
            status=status,
            amount=amount,
            currency=currency,
            # The link's URL is known only right after creating it (Square has no lookup
            # of a payment link by order): keep the one create_payment returned.
            next_action=link.next_action if link is not None else None,
            raw_status=state,
        )

    async def _payment_id_for_refund(self, reference: str) -> str:
        """A hosted payment's reference is its order: refund the order's payment."""
        order = await self._get_order(reference, "refund_lookup")
        if order is None:
            return reference  # a direct payment: the reference is the payment id
        payment_ids = [t.payment_id or t.id for t in order.tenders or [] if t.payment_id or t.id]
        if not payment_ids:
            raise GatewayRejected(
                "This Square order has not been paid: there is nothing to refund.",
                gateway_code=str(order.state or "") or None,
            )
        return str(payment_ids[-1])
