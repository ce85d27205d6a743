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
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from square import AsyncSquare
from square.core.api_error import ApiError
from square.core.request_options import RequestOptions

from paygate.gateways.adapters.base import (
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
    GatewayUnavailable,
)
from paygate.gateways.adapters.base_http import call_gateway, http_client, record_response

T = TypeVar("T")

_TAKE_PAYMENTS = ("take payments", "PAYMENTS_WRITE")
# Retries are the payment layer's decision, not the SDK's.
_NO_RETRIES: RequestOptions = {"max_retries": 0}

SPEC = GatewayTypeSpec(
    type=GatewayType.SQUARE,
    display_name="Square",
    description="Card payments through your Square seller account.",
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="access_token",
            label="Access token",
            kind=FieldKind.SECRET,
            help=(
                "In the Square Developer Console, open your application, choose Sandbox or "
                "Production to match this gateway's environment, and copy the access token "
                "on the Credentials page."
            ),
        ),
        FieldSpec(
            name="application_id",
            label="Application ID",
            help=(
                "On the same Credentials page: the application ID (sandbox-sq0idb-... in "
                "Sandbox, sq0idp-... in Production). The payment page uses it in the browser."
            ),
            prefixes={
                Environment.TEST: ("sandbox-sq0idb-",),
                Environment.LIVE: ("sq0idp-",),
            },
        ),
        FieldSpec(
            name="location_id",
            label="Location ID",
            help=(
                "In the Developer Console's Locations page (or Square Dashboard > Account & "
                "Settings > Locations): the ID of the location payments are taken for."
            ),
        ),
        FieldSpec(
            name="webhook_signature_key",
            label="Webhook signature key",
            kind=FieldKind.SECRET,
            required=False,
            help=(
                "In the Developer Console, open Webhooks > Subscriptions, open the subscription "
                "that points at paygate and copy its signature key. Optional: needed only to "
                "verify webhooks."
            ),
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://connect.squareupsandbox.com (test) or "
                "https://connect.squareup.com (live)."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: "https://connect.squareupsandbox.com",
        Environment.LIVE: "https://connect.squareup.com",
    },
)


class SquareAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

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

    # --- the calls --------------------------------------------------------------------

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


class _DeclinedPayment(GatewayDeclined):
    """A decline that still carries the FAILED payment (for fetch_payment)."""

    def __init__(self, result: PaymentResult) -> None:
        decline = result.decline
        assert decline is not None
        super().__init__(
            decline.message,
            decline_code=decline.code.value,
            hard=decline.hard,
            gateway_code=decline.gateway_code,
        )
        self.result = result


class _UnknownObject(GatewayRejected):
    """Square answered 404 NOT_FOUND for the object."""


def _hosted(request: PaymentRequest) -> bool:
    return request.flow is PaymentFlow.HOSTED or not request.payment_method


# Square's payment error codes (PAYMENT_METHOD_ERROR) as paygate's decline codes.
_DECLINES: dict[str, tuple[DeclineCode, bool, str]] = {
    "GENERIC_DECLINE": (DeclineCode.CARD_DECLINED, False, "The card was declined."),
    "CVV_FAILURE": (DeclineCode.INCORRECT_CVC, False, "The card's security code is incorrect."),
    "VERIFY_CVV_FAILURE": (
        DeclineCode.INCORRECT_CVC,
        False,
        "The card's security code is incorrect.",
    ),
    "ADDRESS_VERIFICATION_FAILURE": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card's postal code does not match.",
    ),
    "VERIFY_AVS_FAILURE": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card's postal code does not match.",
    ),
    "INVALID_EXPIRATION": (
        DeclineCode.EXPIRED_CARD,
        False,
        "The card's expiration date is invalid or past.",
    ),
    "BAD_EXPIRATION": (
        DeclineCode.EXPIRED_CARD,
        False,
        "The card's expiration date is missing or invalid.",
    ),
    "CARD_EXPIRED": (DeclineCode.EXPIRED_CARD, True, "The card has expired."),
    "INSUFFICIENT_FUNDS": (
        DeclineCode.INSUFFICIENT_FUNDS,
        False,
        "The card has insufficient funds.",
    ),
    "GIFT_CARD_AVAILABLE_AMOUNT": (
        DeclineCode.INSUFFICIENT_FUNDS,
        False,
        "The gift card's balance is too low.",
    ),
    "TRANSACTION_LIMIT": (
        DeclineCode.CARD_DECLINED,
        False,
        "The card issuer refused this amount.",
    ),
    "CARD_DECLINED_VERIFICATION_REQUIRED": (
        DeclineCode.AUTHENTICATION_FAILED,
        False,
        "The card needs the cardholder's verification.",
    ),
    "CARD_DECLINED_CALL_ISSUER": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card was declined: the cardholder should call the issuer.",
    ),
    "INVALID_PIN": (DeclineCode.CARD_DECLINED, False, "The card's PIN is incorrect."),
    "ALLOWABLE_PIN_TRIES_EXCEEDED": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card's PIN was entered wrong too many times.",
    ),
    "CARD_NOT_SUPPORTED": (DeclineCode.CARD_DECLINED, True, "This card is not supported."),
    "INVALID_CARD": (DeclineCode.CARD_DECLINED, True, "The card is not valid."),
    "INVALID_ACCOUNT": (DeclineCode.CARD_DECLINED, True, "The card account was not found."),
    "PAN_FAILURE": (DeclineCode.CARD_DECLINED, True, "The card number is not valid."),
    "VOICE_FAILURE": (DeclineCode.CARD_DECLINED, True, "The card issuer needs a voice call."),
    "CARDHOLDER_INSUFFICIENT_PERMISSIONS": (
        DeclineCode.CARD_DECLINED,
        True,
        "The card cannot be used here.",
    ),
    "BLOCKED_BY_BLOCKLIST": (
        DeclineCode.FRAUD_SUSPECTED,
        True,
        "The payment was blocked by the seller's risk rules.",
    ),
    "FRAUD_DETECTED": (DeclineCode.FRAUD_SUSPECTED, True, "The payment looked fraudulent."),
}

_PAYMENT_STATUSES = {
    "COMPLETED": GatewayPaymentStatus.SUCCEEDED,
    "APPROVED": GatewayPaymentStatus.PROCESSING,
    "PENDING": GatewayPaymentStatus.PROCESSING,
    "CANCELED": GatewayPaymentStatus.CANCELED,
    "FAILED": GatewayPaymentStatus.FAILED,
}

_REFUND_STATUSES = {
    "COMPLETED": GatewayRefundStatus.SUCCEEDED,
    "PENDING": GatewayRefundStatus.PENDING,
    "REJECTED": GatewayRefundStatus.FAILED,
    "FAILED": GatewayRefundStatus.FAILED,
}


def _decline_for(code: str | None) -> Decline | None:
    found = _DECLINES.get(code or "")
    if found is None:
        return None
    decline_code, hard, message = found
    return Decline(code=decline_code, message=message, hard=hard, gateway_code=code)


def _error_codes(exc: ApiError) -> list[tuple[str | None, str | None]]:
    """(category, code) of each error in Square's body."""
    body = exc.body
    errors = body.get("errors") if isinstance(body, dict) else None
    found: list[tuple[str | None, str | None]] = []
    for error in errors if isinstance(errors, list) else []:
        if isinstance(error, dict):
            category, code = error.get("category"), error.get("code")
            found.append(
                (
                    category if isinstance(category, str) else None,
                    code if isinstance(code, str) else None,
                )
            )
    return found


def _decline_from_errors(exc: ApiError) -> Decline | None:
    errors = _error_codes(exc)
    for _category, code in errors:
        if (decline := _decline_for(code)) is not None:
            return decline
    for category, code in errors:
        if category == "PAYMENT_METHOD_ERROR":
            return Decline(
                code=DeclineCode.CARD_DECLINED,
                message="The card was declined.",
                hard=False,
                gateway_code=code,
            )
    return None


def _failed_payment(exc: ApiError) -> Any:
    """The FAILED payment Square puts beside the errors of a declined CreatePayment."""
    from square.types.payment import Payment

    body = exc.body
    payment = body.get("payment") if isinstance(body, dict) else None
    if not isinstance(payment, dict):
        return None
    try:
        return Payment.model_validate(payment)
    except ValueError:
        return None


def _money(money: Any) -> tuple[int, str]:
    amount = getattr(money, "amount", None)
    currency = getattr(money, "currency", None)
    if not isinstance(amount, int) or not isinstance(currency, str):
        raise GatewayRejected("Square's answer did not say the amount.", gateway_code="NO_AMOUNT")
    return amount, currency


def _payment_result(payment: Any) -> PaymentResult:
    raw = str(payment.status or "")
    amount, currency = _money(payment.total_money or payment.amount_money)
    status = _PAYMENT_STATUSES.get(raw, GatewayPaymentStatus.PROCESSING)
    decline: Decline | None = None
    if status is GatewayPaymentStatus.FAILED:
        errors = getattr(payment.card_details, "errors", None) or []
        code = next((e.code for e in errors if getattr(e, "code", None)), None)
        decline = _decline_for(code) or Decline(
            code=DeclineCode.CARD_DECLINED,
            message="The card was declined.",
            hard=False,
            gateway_code=code or "FAILED",
        )
    return PaymentResult(
        gateway_reference=str(payment.id or ""),
        status=status,
        amount=amount,
        currency=currency,
        decline=decline,
        raw_status=raw,
    )


def _refund_answer(refund: Any) -> RefundResult:
    """A PaymentRefund as the result (inside `send`: records the answer, redacted)."""
    amount, currency = _money(refund.amount_money)
    raw = str(refund.status or "")
    record_response(
        200,
        {
            "refund_id": refund.id,
            "payment_id": refund.payment_id,
            "status": raw,
            "amount": amount,
            "currency": currency,
        },
    )
    return RefundResult(
        gateway_reference=str(refund.id or ""),
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _payment_summary(payment: Any) -> dict[str, Any]:
    money = payment.total_money or payment.amount_money
    card = payment.card_details
    return {
        "payment_id": payment.id,
        "status": payment.status,
        "amount": getattr(money, "amount", None),
        "currency": getattr(money, "currency", None),
        "order_id": payment.order_id,
        "card_status": getattr(card, "status", None),
        "card_brand": getattr(getattr(card, "card", None), "card_brand", None),
    }


def _error_summary(exc: ApiError) -> dict[str, Any]:
    summary: dict[str, Any] = {
        "errors": [{"category": c, "code": k} for c, k in _error_codes(exc)],
    }
    payment = exc.body.get("payment") if isinstance(exc.body, dict) else None
    if isinstance(payment, dict):
        summary["payment_id"] = payment.get("id")
        summary["status"] = payment.get("status")
    return summary


def _describe(location: Any) -> str:
    name = getattr(location, "name", None)
    return f"{location.id} ({name})" if name else str(location.id)


def _error_code(exc: ApiError) -> str | None:
    # Square's error body: {"errors": [{"category", "code", "detail", "field"}]}.
    body = exc.body
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
    return None


def _map_api_error(
    exc: ApiError,
    *,
    permission: tuple[str, str] = ("read locations", "MERCHANT_PROFILE_READ"),
) -> GatewayError:
    status = exc.status_code or 0
    code = _error_code(exc)
    if status == 401:
        return GatewayMisconfigured("Square rejected the access token.", gateway_code=code)
    if status == 403:
        return GatewayMisconfigured(
            f"Square refused access: the access token lacks the permission to {permission[0]} "
            f"({permission[1]}).",
            gateway_code=code,
        )
    if code == "CARD_PROCESSING_NOT_ENABLED":
        return GatewayMisconfigured(
            "The Square location is not enabled for card processing.", gateway_code=code
        )
    if status == 429 or status >= 500:
        # Square does not act on a rate-limited request.
        return GatewayUnavailable(
            f"Square answered with HTTP {status}.", gateway_code=code, refused=status == 429
        )
    if status == 404 or code is None:
        # No Square error body: something else answered at the configured base URL.
        return GatewayMisconfigured(
            f"The Square API base URL did not answer like Square (HTTP {status}).",
            gateway_code=code,
        )
    return GatewayRejected(f"Square refused the request (HTTP {status}).", gateway_code=code)
