"""Stripe webhooks, as docs.stripe.com/webhooks documents them.

Signature: the `Stripe-Signature` header is a comma-separated list of `key=value` items: one
`t` (Unix seconds when Stripe signed) and one or more `v1` (hex HMAC-SHA256, keyed with the
endpoint's signing secret `whsec_...`, of `"{t}.{raw body}"`); other schemes (`v0`) are
ignored. Stripe sends several `v1` while an endpoint's secret is being rolled. paygate
accepts the request when any `v1` matches any secret it holds for the gateway (the current
one, and the previous one while its grace lasts), compared in constant time, and when `t`
is within 5 minutes of its clock either way.

Registration: POST /v1/webhook_endpoints {url, enabled_events[]}; Stripe answers the
endpoint with its `secret`, returned only at creation.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, cast

import stripe

from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
from paygate.gateways.adapters.stripe import StripeAdapter
from paygate.gateways.adapters.stripe_declines import stripe_decline
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
    from_unix,
    integer,
    missing_headers,
    obj,
    refs,
    text,
    verify_signatures,
)

SIGNATURE_HEADER = "stripe-signature"

EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.canceled",
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
    "charge.refunded",
    "charge.refund.updated",
    "refund.created",
    "refund.updated",
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
)

_INTENT_STATUSES = {
    "payment_intent.succeeded": GatewayPaymentStatus.SUCCEEDED,
    "payment_intent.payment_failed": GatewayPaymentStatus.FAILED,
    "payment_intent.processing": GatewayPaymentStatus.PROCESSING,
    "payment_intent.requires_action": GatewayPaymentStatus.REQUIRES_ACTION,
    "payment_intent.canceled": GatewayPaymentStatus.CANCELED,
}
_SESSION_EVENTS = {
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
}
_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "requires_action": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
    "canceled": GatewayRefundStatus.FAILED,
}
_DISPUTE_STATUSES = {
    "won": DisputeStatus.WON,
    "lost": DisputeStatus.LOST,
    # An inquiry closed without becoming a chargeback: nothing was taken back.
    "warning_closed": DisputeStatus.WON,
}


def parse_signature_header(header: str) -> tuple[int | None, list[str]]:
    """(t, [v1 signatures]); t is None when absent, repeated or not an integer."""
    timestamps: list[str] = []
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            timestamps.append(value)
        elif key == "v1" and value:
            signatures.append(value)
    if len(timestamps) != 1 or not timestamps[0].isdigit():
        return None, signatures
    return int(timestamps[0]), signatures


def sign(body: bytes, secret: str, timestamp: int) -> str:
    """The hex v1 signature Stripe computes for `body` signed at `timestamp`."""
    payload = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), payload, hashlib.sha256).hexdigest()


class StripeWebhooks:
    gateway_type: ClassVar[GatewayType] = GatewayType.STRIPE
    secret_field: ClassVar[str] = "webhook_secret"
    setup: ClassVar[SetupGuide] = SetupGuide(
        steps=(
            "In the Stripe Dashboard, open Developers > Webhooks and add an endpoint.",
            "Paste this gateway's webhook URL as the endpoint URL.",
            "Select the events listed below, then add the endpoint.",
            "Open the endpoint, reveal its signing secret (whsec_...) and paste it into this "
            "gateway's Webhook signing secret.",
        ),
        events=EVENTS,
        secret_field="webhook_secret",
        can_register=True,
        notes=(
            "Rolling the secret in Stripe: paste the new one here; paygate keeps accepting "
            "the old one during the grace period you choose.",
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
        if refused := missing_headers(request, "Stripe-Signature"):
            return refused
        timestamp, signatures = parse_signature_header(request.headers[SIGNATURE_HEADER])
        if timestamp is None:
            return Verdict.refused("the Stripe-Signature header has no single timestamp (t=)")
        if not signatures:
            return Verdict.refused("the Stripe-Signature header has no v1 signature")
        return verify_signatures(
            request,
            secrets,
            signatures,
            lambda secret: sign(request.body, secret, timestamp),
            signed_at=timestamp,
            check_time=check_time,
            no_secret="no webhook signing secret is configured for this gateway",
            no_match="no v1 signature matches the gateway's signing secret",
        )

    def identify(self, request: WebhookRequest, event: Mapping[str, Any]) -> EventIdentity:
        return EventIdentity(
            text(event.get("id")), text(event.get("type")), from_unix(event.get("created"))
        )

    def notices(self, event: Mapping[str, Any]) -> list[Notice]:
        kind = text(event.get("type")) or ""
        thing = obj(obj(event.get("data")).get("object"))
        if kind in _INTENT_STATUSES:
            return [_intent_notice(thing, _INTENT_STATUSES[kind])]
        if kind in _SESSION_EVENTS:
            return [_session_notice(kind, thing)]
        if kind == "charge.refunded":
            refunds = obj(thing.get("refunds")).get("data")
            if not isinstance(refunds, list) or not refunds:
                return [IgnoredNotice("the charge lists no refunds: refund.* events say them")]
            payment = ObjectRef(refs(thing.get("payment_intent"), thing.get("id")))
            return [_refund_notice(obj(r), payment) for r in refunds]
        if kind in ("refund.created", "refund.updated", "charge.refund.updated"):
            payment = ObjectRef(refs(_id(thing.get("payment_intent")), _id(thing.get("charge"))))
            return [_refund_notice(thing, payment)]
        if kind.startswith("charge.dispute."):
            return [_dispute_notice(thing)]
        return [IgnoredNotice(f"paygate does not act on {kind or 'untyped'} events")]

    async def register(self, config: AdapterConfig, url: str) -> Registration:
        endpoint = await _StripeApi(config).create_endpoint(url, EVENTS)
        secret = text(getattr(endpoint, "secret", None))
        if secret is None:
            raise GatewayRejected("Stripe created the endpoint without returning its secret.")
        return Registration(
            endpoint_id=str(endpoint.id), configuration={"webhook_secret": secret}, events=EVENTS
        )

    async def expand(self, config: AdapterConfig, ref: ObjectRef) -> ObjectRef:
        found = list(ref.references)
        paygate_id = ref.paygate_id
        api = _StripeApi(config)
        for reference in ref.references:
            if not reference.startswith("pi_"):
                continue
            intent, sessions = await api.intent_and_sessions(reference)
            found += sessions
            paygate_id = paygate_id or _metadata(intent, "paygate_payment")
        return ObjectRef(refs(*found), paygate_id)


def _metadata(thing: Any, key: str) -> str | None:
    metadata = getattr(thing, "metadata", None)
    value = metadata.get(key) if metadata is not None else None
    return value if isinstance(value, str) and value else None


def _id(value: Any) -> str | None:
    """An expandable field: an id, or the expanded object's id."""
    return text(value) or text(obj(value).get("id"))


def _money(thing: Mapping[str, Any], amount_key: str = "amount") -> tuple[int, str]:
    amount = integer(thing.get(amount_key))
    currency = text(thing.get("currency"))
    if amount is None or currency is None:
        raise MalformedEvent("the object does not say its amount and currency")
    return amount, currency.upper()


def _intent_notice(intent: Mapping[str, Any], status: GatewayPaymentStatus) -> PaymentNotice:
    amount, currency = _money(intent)
    received = integer(intent.get("amount_received"))
    if status is GatewayPaymentStatus.SUCCEEDED and received:
        amount = received
    decline = None
    if status is GatewayPaymentStatus.FAILED:
        error = obj(intent.get("last_payment_error"))
        decline = stripe_decline(text(error.get("decline_code")) or text(error.get("code")))
    return PaymentNotice(
        payment=ObjectRef(
            refs(intent.get("id")), text(obj(intent.get("metadata")).get("paygate_payment"))
        ),
        status=status,
        amount=amount,
        currency=currency,
        raw_status=text(intent.get("status")) or "",
        decline=decline,
    )


def _session_notice(kind: str, session: Mapping[str, Any]) -> PaymentNotice:
    amount, currency = _money(session, "amount_total")
    paid = text(session.get("payment_status")) or ""
    if kind == "checkout.session.expired":
        status = GatewayPaymentStatus.CANCELED
    elif kind == "checkout.session.async_payment_failed":
        status = GatewayPaymentStatus.FAILED
    elif paid in ("paid", "no_payment_required"):
        status = GatewayPaymentStatus.SUCCEEDED
    else:
        status = GatewayPaymentStatus.PROCESSING  # completed, the money still on its way
    return PaymentNotice(
        payment=ObjectRef(
            refs(session.get("id"), _id(session.get("payment_intent"))),
            text(obj(session.get("metadata")).get("paygate_payment")),
        ),
        status=status,
        amount=amount,
        currency=currency,
        raw_status=f"{text(session.get('status')) or ''}/{paid}",
        decline=stripe_decline(None) if status is GatewayPaymentStatus.FAILED else None,
    )


def _refund_notice(refund: Mapping[str, Any], payment: ObjectRef) -> RefundNotice:
    amount, currency = _money(refund)
    reference = text(refund.get("id"))
    if reference is None:
        raise MalformedEvent("the refund has no id")
    raw = text(refund.get("status")) or ""
    return RefundNotice(
        payment=payment,
        reference=reference,
        paygate_id=text(obj(refund.get("metadata")).get("paygate_refund")),
        status=_REFUND_STATUSES.get(raw, GatewayRefundStatus.PENDING),
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _dispute_notice(dispute: Mapping[str, Any]) -> DisputeNotice:
    reference = text(dispute.get("id"))
    if reference is None:
        raise MalformedEvent("the dispute has no id")
    amount, currency = _money(dispute)
    return DisputeNotice(
        payment=ObjectRef(refs(_id(dispute.get("payment_intent")), _id(dispute.get("charge")))),
        reference=reference,
        status=_DISPUTE_STATUSES.get(text(dispute.get("status")) or "", DisputeStatus.OPEN),
        reason=text(dispute.get("reason")),
        amount=amount,
        currency=currency,
    )


class _StripeApi(StripeAdapter):
    """The Stripe adapter's client, used for the webhook endpoints API."""

    async def create_endpoint(self, url: str, events: Sequence[str]) -> stripe.WebhookEndpoint:
        async def create() -> stripe.WebhookEndpoint:
            async with self._stripe() as client:
                return await client.v1.webhook_endpoints.create_async(
                    {
                        "url": url,
                        "enabled_events": cast(Any, list(events)),
                        "description": "paygate",
                    }
                )

        return await self._call(
            "register_webhook",
            {"url": url, "events": len(events)},
            create,
            lambda endpoint: {"id": endpoint.id, "status": getattr(endpoint, "status", None)},
        )

    async def intent_and_sessions(self, intent_id: str) -> tuple[Any, list[str]]:
        """The PaymentIntent (None when Stripe does not know it) and the Checkout sessions
        that made it."""
        async with self._stripe() as client:
            try:
                intent = await self._call(
                    "webhook_lookup",
                    {"payment_intent": intent_id},
                    lambda: client.v1.payment_intents.retrieve_async(intent_id),
                    lambda found: {"id": found.id},
                )
            except GatewayRejected:
                return None, []
            sessions = await self._call(
                "webhook_lookup",
                {"payment_intent": intent_id},
                lambda: client.v1.checkout.sessions.list_async({"payment_intent": intent_id}),
                lambda page: {"sessions": len(page.data)},
            )
        return intent, [s.id for s in sessions.data if s.id]
