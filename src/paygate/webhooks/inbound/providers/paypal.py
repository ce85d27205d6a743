"""PayPal webhooks, as developer.paypal.com/api/rest/webhooks documents them.

Signature: PayPal signs each delivery with its own private key (SHA256withRSA) and sends the
transmission headers PAYPAL-TRANSMISSION-ID, -TRANSMISSION-TIME, -TRANSMISSION-SIG,
PAYPAL-CERT-URL and PAYPAL-AUTH-ALGO. paygate checks them through PayPal's own API,
POST /v1/notifications/verify-webhook-signature, with the gateway's Webhook ID and the event
as received; only `verification_status: SUCCESS` is accepted. There is no shared secret, so
nothing to rotate: a new webhook gets a new Webhook ID, and the gateway's setting changes
with it. PayPal's signature binds the transmission time, which paygate does not limit
(PayPal retries a delivery for up to 3 days); a replayed event is caught by its id, stored
once per gateway.

Registration: POST /v1/notifications/webhooks {url, event_types: [{name}]}; PayPal answers
the webhook with its `id`, stored as the gateway's Webhook ID.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from paygate.gateways.adapters.base import (
    AdapterConfig,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
)
from paygate.gateways.adapters.base_errors import (
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayUnavailable,
)
from paygate.gateways.adapters.paypal import PayPalAdapter
from paygate.gateways.adapters.paypal_answers import _from_money, _refusal
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
    VerificationUnavailable,
    WebhookRequest,
    from_rfc3339,
    missing_headers,
    obj,
    parse_json_object,
    refs,
    text,
)

TRANSMISSION_HEADERS = {
    "auth_algo": "paypal-auth-algo",
    "cert_url": "paypal-cert-url",
    "transmission_id": "paypal-transmission-id",
    "transmission_sig": "paypal-transmission-sig",
    "transmission_time": "paypal-transmission-time",
}

EVENTS = (
    "PAYMENT.CAPTURE.COMPLETED",
    "PAYMENT.CAPTURE.PENDING",
    "PAYMENT.CAPTURE.DENIED",
    "PAYMENT.CAPTURE.DECLINED",
    "PAYMENT.CAPTURE.REFUNDED",
    "CUSTOMER.DISPUTE.CREATED",
    "CUSTOMER.DISPUTE.UPDATED",
    "CUSTOMER.DISPUTE.RESOLVED",
)

_CAPTURE_STATUSES = {
    "PAYMENT.CAPTURE.COMPLETED": GatewayPaymentStatus.SUCCEEDED,
    "PAYMENT.CAPTURE.PENDING": GatewayPaymentStatus.PROCESSING,
    "PAYMENT.CAPTURE.DENIED": GatewayPaymentStatus.FAILED,
    "PAYMENT.CAPTURE.DECLINED": GatewayPaymentStatus.FAILED,
}
_REFUND_STATUSES = {
    "COMPLETED": GatewayRefundStatus.SUCCEEDED,
    "PENDING": GatewayRefundStatus.PENDING,
    "FAILED": GatewayRefundStatus.FAILED,
    "CANCELLED": GatewayRefundStatus.FAILED,
}
_DISPUTE_OUTCOMES = {
    "RESOLVED_BUYER_FAVOUR": DisputeStatus.LOST,
    "RESOLVED_WITH_PAYOUT": DisputeStatus.LOST,
    "ACCEPTED": DisputeStatus.LOST,
    "RESOLVED_SELLER_FAVOUR": DisputeStatus.WON,
    "CANCELED_BY_BUYER": DisputeStatus.WON,
    "DENIED": DisputeStatus.WON,
}


class PayPalWebhooks:
    gateway_type: ClassVar[GatewayType] = GatewayType.PAYPAL
    secret_field: ClassVar[str] = "webhook_id"
    setup: ClassVar[SetupGuide] = SetupGuide(
        steps=(
            "In the PayPal Developer Dashboard, open Apps & Credentials and your REST API app "
            "(Sandbox or Live, as this gateway).",
            "Under Webhooks, add a webhook with this gateway's webhook URL.",
            "Select the events listed below and save.",
            "Copy the Webhook ID PayPal shows for it into this gateway's Webhook ID.",
        ),
        events=EVENTS,
        secret_field="webhook_id",
        can_register=True,
        notes=(
            "PayPal signs with its own certificate: paygate asks PayPal's "
            "verify-webhook-signature API about every delivery, with this Webhook ID.",
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
        if refused := missing_headers(request, *(h.upper() for h in TRANSMISSION_HEADERS.values())):
            return refused
        values = {name: request.headers[header] for name, header in TRANSMISSION_HEADERS.items()}
        api = config()
        webhook_id = api.value("webhook_id")
        if not webhook_id:
            return Verdict.refused("no Webhook ID is configured for this gateway")
        event = parse_json_object(request.body)
        if event is None:
            return Verdict.refused("the body is not a JSON object")
        body = {**values, "webhook_id": webhook_id, "webhook_event": event}
        try:
            status = await _PayPalWebhooksApi(api).verify_signature(body)
        except GatewayUnavailable as exc:
            raise VerificationUnavailable(exc.message) from None
        except GatewayMisconfigured as exc:
            raise VerificationUnavailable(
                f"PayPal refused paygate's credentials while verifying: {exc.message}"
            ) from None
        except GatewayError as exc:
            return Verdict.refused(f"PayPal's verification refused the request: {exc.message}")
        if status != "SUCCESS":
            return Verdict.refused(
                f"PayPal's verify-webhook-signature answered {status or 'nothing'} for Webhook "
                "ID of this gateway"
            )
        return Verdict(True, "verified by PayPal's verify-webhook-signature API")

    def identify(self, request: WebhookRequest, event: Mapping[str, Any]) -> EventIdentity:
        return EventIdentity(
            text(event.get("id")),
            text(event.get("event_type")),
            from_rfc3339(event.get("create_time")),
        )

    def notices(self, event: Mapping[str, Any]) -> list[Notice]:
        kind = text(event.get("event_type")) or ""
        resource = obj(event.get("resource"))
        if kind in _CAPTURE_STATUSES:
            return [_capture_notice(resource, _CAPTURE_STATUSES[kind])]
        if kind == "PAYMENT.CAPTURE.REFUNDED":
            return [_refund_notice(resource)]
        if kind.startswith("CUSTOMER.DISPUTE."):
            return [_dispute_notice(resource)]
        if kind == "CHECKOUT.ORDER.APPROVED":
            return [
                IgnoredNotice(
                    "paygate captures an approved order when the customer returns; the "
                    "capture's own event follows"
                )
            ]
        return [IgnoredNotice(f"paygate does not act on {kind or 'untyped'} events")]

    async def register(self, config: AdapterConfig, url: str) -> Registration:
        webhook = await _PayPalWebhooksApi(config).create_webhook(url, EVENTS)
        webhook_id = text(webhook.get("id"))
        if webhook_id is None:
            raise GatewayRejected("PayPal created the webhook without answering its id.")
        return Registration(
            endpoint_id=webhook_id, configuration={"webhook_id": webhook_id}, events=EVENTS
        )

    async def expand(self, config: AdapterConfig, ref: ObjectRef) -> ObjectRef:
        found = list(ref.references)
        paygate_id = ref.paygate_id
        api = _PayPalWebhooksApi(config)
        for reference in ref.references:
            capture = await api.capture(reference)
            if capture is not None:
                found += [v for v in (_up(capture),) if v]
                paygate_id = paygate_id or text(capture.get("custom_id"))
        return ObjectRef(refs(*found), paygate_id)


def _up(resource: Mapping[str, Any]) -> str | None:
    """The id at the end of the resource's `up` link (a refund's capture, a capture's order)."""
    links = resource.get("links")
    for link in links if isinstance(links, list) else []:
        href = text(obj(link).get("href"))
        if obj(link).get("rel") == "up" and href:
            return href.rstrip("/").rsplit("/", 1)[-1]
    return None


def _money(money: Any) -> tuple[int, str]:
    try:
        return _from_money(money)
    except GatewayRejected:
        raise MalformedEvent("the object does not say its amount and currency") from None


def _order_of(resource: Mapping[str, Any]) -> str | None:
    return text(obj(obj(resource.get("supplementary_data")).get("related_ids")).get("order_id"))


def _capture_notice(capture: Mapping[str, Any], status: GatewayPaymentStatus) -> PaymentNotice:
    if not text(capture.get("id")):
        raise MalformedEvent("the capture has no id")
    amount, currency = _money(capture.get("amount"))
    raw = text(capture.get("status")) or ""
    decline = None
    if status is GatewayPaymentStatus.FAILED:
        decline = Decline(
            code=DeclineCode.CARD_DECLINED,
            message="PayPal declined the payment. Please choose another way to pay.",
            hard=False,
            gateway_code=raw or None,
        )
    return PaymentNotice(
        # paygate knows a PayPal payment by its order id; custom_id is paygate's payment id.
        payment=ObjectRef(refs(_order_of(capture)), text(capture.get("custom_id"))),
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
    amount, currency = _money(refund.get("amount"))
    raw = text(refund.get("status")) or ""
    custom = text(refund.get("custom_id"))
    return RefundNotice(
        # The refund names its capture (its `up` link); paygate knows the capture's order.
        payment=ObjectRef(refs(_order_of(refund), _up(refund))),
        reference=reference,
        # paygate tags its own refunds with its refund id.
        paygate_id=custom if custom and custom.startswith("re_") else None,
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _dispute_notice(dispute: Mapping[str, Any]) -> DisputeNotice:
    reference = text(dispute.get("dispute_id"))
    if reference is None:
        raise MalformedEvent("the dispute has no dispute_id")
    transactions = dispute.get("disputed_transactions")
    first = obj(transactions[0]) if isinstance(transactions, list) and transactions else {}
    outcome = text(obj(dispute.get("dispute_outcome")).get("outcome_code")) or ""
    status = (
        _DISPUTE_OUTCOMES.get(outcome, DisputeStatus.LOST)
        if text(dispute.get("status")) == "RESOLVED"
        else DisputeStatus.OPEN
    )
    amount, currency = (None, None)
    if dispute.get("dispute_amount") is not None:
        amount, currency = _money(dispute.get("dispute_amount"))
    return DisputeNotice(
        # The disputed capture's custom field carries paygate's payment id.
        payment=ObjectRef(refs(first.get("seller_transaction_id")), text(first.get("custom"))),
        reference=reference,
        status=status,
        reason=text(dispute.get("reason")),
        amount=amount,
        currency=currency,
    )


class _PayPalWebhooksApi(PayPalAdapter):
    """The PayPal adapter's authenticated REST calls, for the webhooks API."""

    async def verify_signature(self, body: Mapping[str, Any]) -> str | None:
        def interpret(status: int, answer: dict[str, Any]) -> str | None:
            if status != 200:
                raise _refusal(status, answer, "the signature verification")
            return text(answer.get("verification_status"))

        return await self._rest(
            "verify_webhook",
            "POST",
            "/v1/notifications/verify-webhook-signature",
            interpret,
            json=dict(body),
            summary={"transmission_id": body.get("transmission_id")},
        )

    async def create_webhook(self, url: str, events: Sequence[str]) -> dict[str, Any]:
        def interpret(status: int, answer: dict[str, Any]) -> dict[str, Any]:
            if status not in (200, 201):
                raise _refusal(status, answer, "the webhook")
            return answer

        return await self._rest(
            "register_webhook",
            "POST",
            "/v1/notifications/webhooks",
            interpret,
            json={"url": url, "event_types": [{"name": name} for name in events]},
            summary={"url": url, "events": len(events)},
        )

    async def capture(self, capture_id: str) -> dict[str, Any] | None:
        """The capture, or None when PayPal does not know it."""

        def interpret(status: int, answer: dict[str, Any]) -> dict[str, Any] | None:
            if status == 404:
                return None
            if status != 200:
                raise _refusal(status, answer, f"capture {capture_id}")
            return answer

        return await self._rest(
            "webhook_lookup",
            "GET",
            f"/v2/payments/captures/{capture_id}",
            interpret,
            summary={"capture_id": capture_id},
        )
