"""A custom HTTP gateway implementing paygate's contract (docs/custom-gateway.md).

Payments: `POST /payments` (a decline is a 201 payment with status "failed"),
`GET /payments/{id}`, `POST /payments/{id}/refunds`, `GET /payments/{id}/refunds/{id}`,
each POST with the attempt's (or the refund's) `Idempotency-Key`. A create's body is built
only from the request, so re-sending it with the same key (which `fetch_payment(request,
None)` and `fetch_refund(request, None)` do after a timeout) replays the first answer
instead of charging or refunding again, as the contract requires.

How the gateway's answers (payments, refunds, errors) read in paygate's terms is in
custom_answers.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayType,
    GatewayTypeSpec,
    PaymentRequest,
    PaymentResult,
    RefundRequest,
    RefundResult,
)
from paygate.gateways.adapters.base_errors import GatewayDeclined, GatewayRejected
from paygate.gateways.adapters.base_http import call_gateway, http_client, json_object
from paygate.gateways.adapters.custom_answers import (
    REFUND_REASONS,
    _map_health_error,
    _payment_answer,
    _refund_answer,
)

SPEC = GatewayTypeSpec(
    type=GatewayType.CUSTOM,
    display_name="Custom gateway",
    description=(
        "Your own payment service, or a provider paygate does not support yet, "
        "speaking paygate's custom gateway HTTP contract."
    ),
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="base_url",
            label="Base URL",
            kind=FieldKind.URL,
            help=(
                "Where the gateway's API lives, e.g. https://payments.example.com/paygate/v1. "
                "paygate calls {base URL}/health, {base URL}/payments and so on."
            ),
        ),
        FieldSpec(
            name="api_key",
            label="API key",
            kind=FieldKind.SECRET,
            help=(
                "The key the gateway's operator issued for paygate; paygate sends it as "
                "'Authorization: Bearer <key>' on every call."
            ),
        ),
        FieldSpec(
            name="webhook_secret",
            label="Webhook signing secret",
            kind=FieldKind.SECRET,
            required=False,
            help=(
                "The Standard Webhooks secret (whsec_ followed by base64) the gateway signs "
                "its webhooks with; its operator gives it to you with the API key. "
                "Optional: needed only to verify webhooks."
            ),
            prefixes={Environment.TEST: ("whsec_",), Environment.LIVE: ("whsec_",)},
        ),
    ),
)


class CustomGatewayAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    def _base_url(self) -> str:
        return self.config.value("base_url").rstrip("/")

    def _auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.value('api_key')}",
            "Accept": "application/json",
        }

    async def test_connection(self) -> ConnectionCheck:
        base = self._base_url()

        async def send() -> ConnectionCheck:
            async with http_client(self.config, base_url=base) as client:
                response = await client.get("/health", headers=self._auth_headers())
            body = json_object(response)
            status = response.status_code
            if status == 200 and body.get("status") == "ok":
                host = urlsplit(base).netloc or base
                return ConnectionCheck(message=f"Connected to the custom gateway at {host}.")
            raise _map_health_error(response, body)

        return await call_gateway(self.config, "test_connection", send)

    # --- payments --------------------------------------------------------------------

    def _post_headers(self, idempotency_key: str) -> dict[str, str]:
        return {**self._auth_headers(), "Idempotency-Key": idempotency_key}

    async def create_payment(self, request: PaymentRequest) -> PaymentResult:
        return await self._create(request, "create_payment", raise_decline=True)

    async def complete_payment(
        self, request: PaymentRequest, gateway_reference: str, return_params: Mapping[str, str]
    ) -> PaymentResult:
        # The redirect back (?payment_id=...) is never trusted: read the payment.
        return await self._get(gateway_reference, "complete_payment")

    async def fetch_payment(
        self, request: PaymentRequest, gateway_reference: str | None
    ) -> PaymentResult:
        if gateway_reference:
            return await self._get(gateway_reference, "fetch_payment")
        # The create's outcome is unknown: the same body with the same key replays the
        # first answer (or creates the payment once if the first never arrived).
        return await self._create(request, "fetch_payment", raise_decline=False)

    async def cancel_payment(
        self, request: PaymentRequest, gateway_reference: str
    ) -> PaymentResult:
        # The custom-gateway contract has no cancel operation: the payment stays open.
        raise GatewayRejected(
            "A custom gateway's payment cannot be withdrawn through its contract.",
            gateway_code="not_cancelable",
        )

    async def refund_payment(self, request: RefundRequest) -> RefundResult:
        return await self._post_refund(request, "refund_payment")

    async def fetch_refund(
        self, request: RefundRequest, gateway_reference: str | None
    ) -> RefundResult:
        if gateway_reference is None:
            # The refund's outcome is unknown: the same body with the same key replays the
            # first answer (in the refund's current state), or refunds once.
            return await self._post_refund(request, "fetch_refund")
        payment_id = request.gateway_payment_reference

        async def send() -> RefundResult:
            async with http_client(self.config, base_url=self._base_url()) as client:
                response = await client.get(
                    f"/payments/{payment_id}/refunds/{gateway_reference}",
                    headers=self._auth_headers(),
                )
            return _refund_answer(response)

        return await call_gateway(
            self.config,
            "fetch_refund",
            send,
            request_summary={
                "payment_id": payment_id,
                "refund_id": gateway_reference,
                "reference": request.reference,
            },
        )

    async def _post_refund(self, request: RefundRequest, operation: str) -> RefundResult:
        # Only the request's fields: the same refund always sends the same body.
        body: dict[str, Any] = {"amount": request.amount}
        if request.reason in REFUND_REASONS:
            body["reason"] = request.reason
        payment_id = request.gateway_payment_reference

        async def send() -> RefundResult:
            async with http_client(self.config, base_url=self._base_url()) as client:
                response = await client.post(
                    f"/payments/{payment_id}/refunds",
                    json=body,
                    headers=self._post_headers(request.idempotency_key),
                )
            return _refund_answer(response)

        return await call_gateway(
            self.config,
            operation,
            send,
            request_summary={
                "payment_id": payment_id,
                "amount": request.amount,
                "currency": request.currency,
                "reason": body.get("reason"),
                "reference": request.reference,
                "idempotency_key": request.idempotency_key,
            },
        )

    async def _create(
        self, request: PaymentRequest, operation: str, *, raise_decline: bool
    ) -> PaymentResult:
        if not request.payment_method:
            raise GatewayRejected(
                "The custom gateway needs a payment method token from its payment form."
            )
        # Only the request's fields: the same request always sends the same body.
        body: dict[str, Any] = {
            "amount": request.amount,
            "currency": request.currency.upper(),
            "payment_method": request.payment_method,
            "reference": request.reference,
            "metadata": {"paygate_attempt": request.idempotency_key},
        }
        if request.description:
            body["description"] = request.description[:255]
        if request.return_url:
            body["return_url"] = request.return_url

        async def send() -> PaymentResult:
            async with http_client(self.config, base_url=self._base_url()) as client:
                response = await client.post(
                    "/payments", json=body, headers=self._post_headers(request.idempotency_key)
                )
            result = _payment_answer(response)
            if raise_decline and result.decline is not None:
                decline = result.decline
                raise GatewayDeclined(
                    decline.message,
                    decline_code=decline.code.value,
                    hard=decline.hard,
                    gateway_code=decline.gateway_code,
                )
            return result

        return await call_gateway(
            self.config,
            operation,
            send,
            request_summary={
                "reference": request.reference,
                "idempotency_key": request.idempotency_key,
                "amount": request.amount,
                "currency": request.currency,
                "return_url": bool(request.return_url),
            },
        )

    async def _get(self, payment_id: str, operation: str) -> PaymentResult:
        async def send() -> PaymentResult:
            async with http_client(self.config, base_url=self._base_url()) as client:
                response = await client.get(f"/payments/{payment_id}", headers=self._auth_headers())
            return _payment_answer(response)

        return await call_gateway(
            self.config, operation, send, request_summary={"payment_id": payment_id}
        )
