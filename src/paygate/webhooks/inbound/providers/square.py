"""Square webhooks, as developer.squareup.com/docs/webhooks documents them.

Signature: `x-square-hmacsha256-signature` is the base64 of HMAC-SHA256, keyed with the
subscription's signature key, of the notification URL (exactly as registered with Square)
followed by the raw body. The URL is paygate's own (`PAYGATE_PUBLIC_URL` +
`/webhooks/{gateway id}`), never read from the request. Square's signature carries no
timestamp: a replayed request is caught by its `event_id`, stored once per gateway.

Registration: POST /v2/webhooks/subscriptions {idempotency_key, subscription: {name,
event_types, notification_url}}; Square answers the subscription with its
`signature_key`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from square import AsyncSquare

from paygate.gateways.adapters.base import (
    AdapterConfig,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
from paygate.gateways.adapters.square import SquareAdapter
from paygate.gateways.adapters.square_calls import _NO_RETRIES
from paygate.payments.gateway_reports import DisputeStatus
from paygate.webhooks.inbound.providers.base import (
    ConfigSource,
    DisputeNotice,
    EventIdentity,
    IgnoredNotice,
    MalformedEvent,
    Notice,
    ObjectRef,
    PaymentNotice,
    RefundNotice,
    Registration,
    SetupGuide,
    SigningSecret,
    Verdict,
    WebhookRequest,
    from_rfc3339,
    integer,
    missing_headers,
    obj,
    refs,
    text,
    verify_signatures,
)

SIGNATURE_HEADER = "x-square-hmacsha256-signature"

EVENTS = (
    "payment.created",
    "payment.updated",
    "refund.created",
    "refund.updated",
    "dispute.created",
    "dispute.state.updated",
)

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
_DISPUTE_STATUSES = {
    "WON": DisputeStatus.WON,
    "INQUIRY_CLOSED": DisputeStatus.WON,
    "LOST": DisputeStatus.LOST,
    "ACCEPTED": DisputeStatus.LOST,
}


def sign(url: str, body: bytes, key: str) -> str:
    """The base64 signature Square computes for `body` sent to `url`."""
    digest = hmac.new(key.encode(), url.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


class SquareWebhooks:
    gateway_type: ClassVar[GatewayType] = GatewayType.SQUARE
    secret_field: ClassVar[str] = "webhook_signature_key"
    setup: ClassVar[SetupGuide] = SetupGuide(
        steps=(
            "In the Square Developer Console, open your application, then Webhooks > "
            "Subscriptions, and add a subscription.",
            "Paste this gateway's webhook URL as the notification URL (exactly: Square signs it).",
            "Select the events listed below and save.",
            "Open the subscription, show its signature key and paste it into this gateway's "
            "Webhook signature key.",
        ),
        events=EVENTS,
        secret_field="webhook_signature_key",
        can_register=True,
        notes=(
            "Registering needs the application's personal access token: Square refuses "
            "OAuth tokens for webhook subscriptions.",
        ),
    )

    async def verify(
        self,
        request: WebhookRequest,
        secrets: Sequence[SigningSecret],
        config: ConfigSource,
        *,
        check_time: bool,
    ) -> Verdict:
        if refused := missing_headers(request, "x-square-hmacsha256-signature"):
            return refused
        return verify_signatures(
            request,
            secrets,
            [request.headers[SIGNATURE_HEADER].strip()],
            lambda key: sign(request.url, request.body, key),
            signed_at=None,  # Square signs no time
            check_time=check_time,
            no_secret="no webhook signature key is configured for this gateway",
            no_match="the signature does not match the gateway's signature key and "
            "notification URL",
        )

    def identify(self, request: WebhookRequest, event: Mapping[str, Any]) -> EventIdentity:
        return EventIdentity(
            text(event.get("event_id")),
            text(event.get("type")),
            from_rfc3339(event.get("created_at")),
        )

    def notices(self, event: Mapping[str, Any]) -> list[Notice]:
        kind = text(event.get("type")) or ""
        inner = obj(obj(event.get("data")).get("object"))
        if kind in ("payment.created", "payment.updated"):
            return [_payment_notice(obj(inner.get("payment")))]
        if kind in ("refund.created", "refund.updated"):
            return [_refund_notice(obj(inner.get("refund")))]
        if kind.startswith("dispute."):
            return [_dispute_notice(obj(inner.get("dispute")), obj(event.get("data")))]
        return [IgnoredNotice(f"paygate does not act on {kind or 'untyped'} events")]

    async def register(self, config: AdapterConfig, url: str) -> Registration:
        subscription = await _SquareSubscriptions(config).create_subscription(url, EVENTS)
        key = text(getattr(subscription, "signature_key", None))
        if key is None or not subscription.id:
            raise GatewayRejected("Square created the subscription without its signature key.")
        return Registration(
            endpoint_id=subscription.id,
            configuration={"webhook_signature_key": key},
            events=EVENTS,
        )

    async def expand(self, config: AdapterConfig, ref: ObjectRef) -> ObjectRef:
        found = list(ref.references)
        paygate_id = ref.paygate_id
        api = _SquareSubscriptions(config)
        for reference in ref.references:
            payment = await api.payment(reference)
            if payment is not None:
                found += [v for v in (payment.order_id,) if v]
                paygate_id = paygate_id or payment.reference_id
        return ObjectRef(refs(*found), paygate_id)


def _money(money: Any) -> tuple[int, str]:
    amount = integer(obj(money).get("amount"))
    currency = text(obj(money).get("currency"))
    if amount is None or currency is None:
        raise MalformedEvent("the object does not say its amount and currency")
    return amount, currency.upper()


def _payment_notice(payment: Mapping[str, Any]) -> PaymentNotice:
    if not text(payment.get("id")):
        raise MalformedEvent("the payment has no id")
    amount, currency = _money(payment.get("amount_money"))
    raw = text(payment.get("status")) or ""
    status = _PAYMENT_STATUSES.get(raw, GatewayPaymentStatus.PROCESSING)
    decline = None
    if status is GatewayPaymentStatus.FAILED:
        decline = Decline(
            code=DeclineCode.CARD_DECLINED,
            message="The card was declined.",
            hard=False,
            gateway_code=raw,
        )
    return PaymentNotice(
        payment=ObjectRef(
            refs(payment.get("id"), payment.get("order_id")), text(payment.get("reference_id"))
        ),
        status=status,
        amount=amount,
        currency=currency,
        raw_status=raw,
        decline=decline,
    )


def _refund_notice(refund: Mapping[str, Any]) -> RefundNotice:
    reference = text(refund.get("id"))
    if reference is None:
        raise MalformedEvent("the refund has no id")
    amount, currency = _money(refund.get("amount_money"))
    raw = text(refund.get("status")) or ""
    return RefundNotice(
        payment=ObjectRef(refs(refund.get("payment_id"), refund.get("order_id"))),
        reference=reference,
        paygate_id=None,
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _dispute_notice(dispute: Mapping[str, Any], data: Mapping[str, Any]) -> DisputeNotice:
    reference = text(dispute.get("dispute_id")) or text(dispute.get("id")) or text(data.get("id"))
    if reference is None:
        raise MalformedEvent("the dispute has no id")
    money = obj(dispute.get("amount_money"))
    payment_id = text(obj(dispute.get("disputed_payment")).get("payment_id"))
    return DisputeNotice(
        payment=ObjectRef(refs(payment_id)),
        reference=reference,
        status=_DISPUTE_STATUSES.get(text(dispute.get("state")) or "", DisputeStatus.OPEN),
        reason=text(dispute.get("reason")),
        amount=integer(money.get("amount")),
        currency=text(money.get("currency")),
    )


class _SquareSubscriptions(SquareAdapter):
    """The Square adapter's client, used for the webhook subscriptions API."""

    async def create_subscription(self, url: str, events: Sequence[str]) -> Any:
        async def action(client: AsyncSquare) -> Any:
            response = await client.webhooks.subscriptions.create(
                idempotency_key=secrets.token_hex(16),
                subscription={
                    "name": "paygate",
                    "event_types": list(events),
                    "notification_url": url,
                },
                request_options=_NO_RETRIES,
            )
            if response.subscription is None:
                raise GatewayRejected("Square did not answer the subscription it created.")
            return response.subscription

        return await self._call(
            "register_webhook",
            action,
            summary={"url": url, "events": len(events)},
            permission=("manage webhook subscriptions", "the application's personal token"),
        )

    async def payment(self, payment_id: str) -> Any:
        """The Square payment, or None when Square does not know it."""

        async def action(client: AsyncSquare) -> Any:
            return (await client.payments.get(payment_id, request_options=_NO_RETRIES)).payment

        try:
            return await self._call("webhook_lookup", action, summary={"payment_id": payment_id})
        except GatewayRejected as exc:
            if exc.gateway_code == "NOT_FOUND":
                return None
            raise
