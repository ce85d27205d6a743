"""A custom HTTP gateway implementing paygate's contract (docs/custom-gateway.md).

Payments: `POST /payments` (a decline is a 201 payment with status "failed"),
`GET /payments/{id}`, `POST /payments/{id}/refunds`, `GET /payments/{id}/refunds/{id}`,
each POST with the attempt's (or the refund's) `Idempotency-Key`. A create's body is built
only from the request, so re-sending it with the same key (which `fetch_payment(request,
None)` and `fetch_refund(request, None)` do after a timeout) replays the first answer
instead of charging or refunding again, as the contract requires.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

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
            body = _json_object(response)
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


# --- payments: answers ---------------------------------------------------------------

REFUND_REASONS = frozenset({"requested_by_customer", "duplicate", "fraudulent"})

# The contract's decline codes and whether each is hard (section 5).
_DECLINES: dict[str, tuple[DeclineCode, bool]] = {
    "card_declined": (DeclineCode.CARD_DECLINED, True),
    "insufficient_funds": (DeclineCode.INSUFFICIENT_FUNDS, False),
    "expired_card": (DeclineCode.EXPIRED_CARD, True),
    "incorrect_cvc": (DeclineCode.INCORRECT_CVC, True),
    "processing_error": (DeclineCode.PROCESSING_ERROR, False),
    "fraud_suspected": (DeclineCode.FRAUD_SUSPECTED, True),
}


_STATUSES = {
    "succeeded": GatewayPaymentStatus.SUCCEEDED,
    "failed": GatewayPaymentStatus.FAILED,
    "requires_action": GatewayPaymentStatus.REQUIRES_ACTION,
    "processing": GatewayPaymentStatus.PROCESSING,
}

_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
}


def custom_decline(code: str | None) -> Decline:
    """paygate's reading of the contract's decline code (unknown: card_declined, hard)."""
    mapped, hard = _DECLINES.get(code or "", (DeclineCode.CARD_DECLINED, True))
    return Decline(code=mapped, message=DECLINE_MESSAGES[mapped], hard=hard, gateway_code=code)


def _payment_answer(response: httpx.Response) -> PaymentResult:
    """A payment object answer as a result (inside `send`: records the answer)."""
    body = _json_object(response)
    if response.status_code not in (200, 201):
        record_response(response.status_code, _error_summary(body))
        raise _map_payment_error(response, body)
    record_response(response.status_code, _payment_summary(body))
    return _payment_result(body)


def _payment_result(body: dict[str, Any]) -> PaymentResult:
    payment_id = body.get("id")
    status = _STATUSES.get(str(body.get("status")))
    amount = body.get("amount")
    currency = body.get("currency")
    if (
        not isinstance(payment_id, str)
        or status is None
        or not isinstance(amount, int)
        or isinstance(amount, bool)
        or not isinstance(currency, str)
    ):
        # Something answered, but not with the contract's payment object: the outcome is
        # unknown, so it is not read as a failure.
        raise GatewayUnavailable("The custom gateway answered without a valid payment object.")
    next_action = None
    decline = None
    if status is GatewayPaymentStatus.REQUIRES_ACTION:
        redirect_url = body.get("redirect_url")
        if not isinstance(redirect_url, str) or not redirect_url:
            raise GatewayUnavailable(
                "The custom gateway asked for a customer action without a redirect_url."
            )
        next_action = NextAction(type="redirect", redirect_url=redirect_url)
    elif status is GatewayPaymentStatus.FAILED:
        code = body.get("decline_code")
        decline = custom_decline(code if isinstance(code, str) else None)
    return PaymentResult(
        gateway_reference=payment_id,
        status=status,
        amount=amount,
        currency=currency.upper(),
        next_action=next_action,
        decline=decline,
        raw_status=str(body.get("status")),
    )


def _refund_answer(response: httpx.Response) -> RefundResult:
    """A refund object answer as a result (inside `send`: records the answer)."""
    body = _json_object(response)
    if response.status_code not in (200, 201):
        record_response(response.status_code, _error_summary(body))
        raise _map_payment_error(response, body)
    record_response(response.status_code, _refund_summary(body))
    return _refund_result(body)


def _refund_result(body: dict[str, Any]) -> RefundResult:
    refund_id = body.get("id")
    status = _REFUND_STATUSES.get(str(body.get("status")))
    amount = body.get("amount")
    currency = body.get("currency")
    if (
        not isinstance(refund_id, str)
        or status is None
        or not isinstance(amount, int)
        or isinstance(amount, bool)
        or not isinstance(currency, str)
    ):
        raise GatewayUnavailable("The custom gateway answered without a valid refund object.")
    return RefundResult(
        gateway_reference=refund_id,
        status=status,
        amount=amount,
        currency=currency.upper(),
        raw_status=str(body.get("status")),
    )


def _map_payment_error(response: httpx.Response, body: dict[str, Any]) -> GatewayError:
    """A non-2xx answer to a payment or refund call. The gateway's message is not reused."""
    status = response.status_code
    code = _error_type(body)
    if status in (401, 403):
        return GatewayMisconfigured(
            f"The custom gateway rejected the API key (HTTP {status}).", gateway_code=code
        )
    if status == 429 or status >= 500:
        # The contract: a gateway answers 429 or 503 only when it did nothing.
        return GatewayUnavailable(
            f"The custom gateway answered with HTTP {status}.",
            gateway_code=code,
            refused=status in (429, 503),
        )
    if status == 404 and code is None:
        # Not the contract's error body: something else answers at this base URL.
        return GatewayMisconfigured(
            "The custom gateway has no payments endpoint at this base URL (HTTP 404)."
        )
    param = _error_param(body)
    detail = f" (HTTP {status}, {code}" + (f", param {param})" if param else ")")
    if status == 404:
        return GatewayRejected("The custom gateway has no such payment" + detail, gateway_code=code)
    if code == "idempotency_conflict":
        return GatewayRejected(
            "The custom gateway saw this idempotency key with a different request" + detail,
            gateway_code=code,
        )
    return GatewayRejected("The custom gateway refused the request" + detail, gateway_code=code)


def _error_param(body: dict[str, Any]) -> str | None:
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("param"), str):
        return str(error["param"])
    return None


# --- redacted summaries: ids, amounts, statuses and codes only -----------------------


def _payment_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": body.get("id"),
        "status": body.get("status"),
        "amount": body.get("amount"),
        "currency": body.get("currency"),
        "amount_refunded": body.get("amount_refunded"),
        "decline_code": body.get("decline_code"),
        "redirect": bool(body.get("redirect_url")),
    }


def _refund_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": body.get("id"),
        "payment_id": body.get("payment_id"),
        "status": body.get("status"),
        "amount": body.get("amount"),
        "currency": body.get("currency"),
    }


def _error_summary(body: dict[str, Any]) -> dict[str, Any]:
    return {"error_type": _error_type(body), "param": _error_param(body)}


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_type(body: dict[str, Any]) -> str | None:
    # The contract's error body: {"error": {"type": ..., "message": ..., "param": ...}}.
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return None


def _map_health_error(response: httpx.Response, body: dict[str, Any]) -> GatewayError:
    status = response.status_code
    code = _error_type(body)
    if status in (401, 403):
        return GatewayMisconfigured(
            f"The custom gateway rejected the API key (HTTP {status}).", gateway_code=code
        )
    if status == 200:
        reported = body.get("status")
        if isinstance(reported, str):
            return GatewayUnavailable(
                f"The custom gateway reports its status as {reported!r}, not 'ok'.",
                gateway_code=reported,
            )
        return GatewayMisconfigured(
            "The base URL answered /health without the contract's JSON "
            '{"status": "ok"}: check the base URL.'
        )
    if status == 429 or status >= 500:
        return GatewayUnavailable(
            f"The custom gateway answered with HTTP {status}.", gateway_code=code
        )
    if status in (404, 405):
        return GatewayMisconfigured(
            f"The custom gateway has no /health endpoint at this base URL (HTTP {status})."
        )
    return GatewayRejected(
        f"The custom gateway refused the health check (HTTP {status}).", gateway_code=code
    )
