"""Custom gateways' webhooks: the scheme of docs/custom-gateway.md section 7, which is
the Standard Webhooks specification (standardwebhooks.com).

Signature: `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature` (a
space-separated list of `v1,<base64>`); each signature is the base64 of HMAC-SHA256, keyed
with the base64-decoded secret after its `whsec_` prefix, of
`"{webhook-id}.{webhook-timestamp}.{raw body}"`. Accepted when any signature matches any
secret paygate holds (current, or previous during its grace) and the timestamp is within 5
minutes of paygate's clock either way. The event id is `webhook-id` (the body's `id` too).

Custom gateways have no registration API in contract version 1: the operator gives the
secret with the API key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from paygate.gateways.adapters.base import (
    DECLINE_MESSAGES,
    AdapterConfig,
    Decline,
    DeclineCode,
    GatewayPaymentStatus,
    GatewayRefundStatus,
    GatewayType,
)
from paygate.gateways.adapters.base_errors import GatewayRejected
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

SECRET_PREFIX = "whsec_"

EVENTS = (
    "payment.succeeded",
    "payment.failed",
    "payment.processing",
    "payment.requires_action",
    "refund.succeeded",
    "refund.failed",
    "dispute.opened",
    "dispute.updated",
    "dispute.closed",
)

_PAYMENT_STATUSES = {
    "succeeded": GatewayPaymentStatus.SUCCEEDED,
    "failed": GatewayPaymentStatus.FAILED,
    "processing": GatewayPaymentStatus.PROCESSING,
    "requires_action": GatewayPaymentStatus.REQUIRES_ACTION,
}
_REFUND_STATUSES = {
    "succeeded": GatewayRefundStatus.SUCCEEDED,
    "pending": GatewayRefundStatus.PENDING,
    "failed": GatewayRefundStatus.FAILED,
}


def signing_key(secret: str) -> bytes | None:
    """The HMAC key of a `whsec_` secret; None when it is not base64."""
    try:
        return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)
    except (binascii.Error, ValueError):
        return None


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """One `v1,<base64>` signature, as a Standard Webhooks sender computes it."""
    key = signing_key(secret) or b""
    content = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode()


class CustomWebhooks:
    gateway_type: ClassVar[GatewayType] = GatewayType.CUSTOM
    secret_field: ClassVar[str] = "webhook_secret"
    setup: ClassVar[SetupGuide] = SetupGuide(
        steps=(
            "Give this gateway's webhook URL to the gateway's operator: the gateway sends "
            "every later status change of a payment or refund there.",
            "The operator gives you the signing secret (whsec_...): paste it into this "
            "gateway's Webhook signing secret.",
        ),
        events=EVENTS,
        secret_field="webhook_secret",
        can_register=False,
        notes=("Signatures follow Standard Webhooks: see docs/custom-gateway.md, section 7.",),
    )

    async def verify(
        self,
        request: WebhookRequest,
        secrets: Sequence[SigningSecret],
        config: ConfigSource,
        *,
        check_time: bool,
    ) -> Verdict:
        if refused := missing_headers(
            request, "webhook-id", "webhook-timestamp", "webhook-signature"
        ):
            return refused
        message_id = request.headers["webhook-id"]
        raw_timestamp = request.headers["webhook-timestamp"]
        if not raw_timestamp.isdigit():
            return Verdict.refused("the webhook-timestamp header is not Unix seconds")
        timestamp = int(raw_timestamp)
        header = request.headers["webhook-signature"]
        signatures = [part.partition(",")[2] for part in header.split() if part.startswith("v1,")]
        if not signatures:
            return Verdict.refused("the webhook-signature header has no v1 signature")

        def expected(secret: str) -> str | None:
            if signing_key(secret) is None:
                return None
            return sign(secret, message_id, timestamp, request.body).partition(",")[2]

        return verify_signatures(
            request,
            secrets,
            signatures,
            expected,
            signed_at=timestamp,
            check_time=check_time,
            no_secret="no webhook signing secret is configured for this gateway",
            no_match="no v1 signature matches the gateway's signing secret",
        )

    def identify(self, request: WebhookRequest, event: Mapping[str, Any]) -> EventIdentity:
        return EventIdentity(
            request.headers.get("webhook-id") or text(event.get("id")),
            text(event.get("type")),
            from_rfc3339(event.get("created_at")),
        )

    def notices(self, event: Mapping[str, Any]) -> list[Notice]:
        kind = text(event.get("type")) or ""
        data = obj(event.get("data"))
        family, _, _ = kind.partition(".")
        if family == "payment":
            return [_payment_notice(data)]
        if family == "refund":
            return [_refund_notice(data)]
        if family == "dispute":
            return [_dispute_notice(data)]
        return [IgnoredNotice(f"paygate does not act on {kind or 'untyped'} events")]

    async def register(self, config: AdapterConfig, url: str) -> Registration:
        raise GatewayRejected(
            "Custom gateways have no registration API: give the URL to the gateway's operator."
        )

    async def expand(self, config: AdapterConfig, ref: ObjectRef) -> ObjectRef:
        return ref  # a custom gateway's events name the payment by paygate's own reference


def _money(thing: Mapping[str, Any]) -> tuple[int, str]:
    amount = integer(thing.get("amount"))
    currency = text(thing.get("currency"))
    if amount is None or currency is None:
        raise MalformedEvent("the object does not say its amount and currency")
    return amount, currency.upper()


def _payment_notice(payment: Mapping[str, Any]) -> PaymentNotice:
    reference = text(payment.get("id"))
    raw = text(payment.get("status")) or ""
    if reference is None or raw not in _PAYMENT_STATUSES:
        raise MalformedEvent("the payment has no id or no known status")
    amount, currency = _money(payment)
    status = _PAYMENT_STATUSES[raw]
    decline = None
    if status is GatewayPaymentStatus.FAILED:
        try:
            code = DeclineCode(text(payment.get("decline_code")) or "card_declined")
        except ValueError:
            code = DeclineCode.CARD_DECLINED
        decline = Decline(
            code=code,
            message=DECLINE_MESSAGES[code],
            hard=code not in (DeclineCode.INSUFFICIENT_FUNDS, DeclineCode.PROCESSING_ERROR),
            gateway_code=text(payment.get("decline_code")),
        )
    return PaymentNotice(
        payment=ObjectRef(refs(reference), text(payment.get("reference"))),
        status=status,
        amount=amount,
        currency=currency,
        raw_status=raw,
        decline=decline,
    )


def _refund_notice(refund: Mapping[str, Any]) -> RefundNotice:
    reference = text(refund.get("id"))
    raw = text(refund.get("status")) or ""
    if reference is None or raw not in _REFUND_STATUSES:
        raise MalformedEvent("the refund has no id or no known status")
    amount, currency = _money(refund)
    return RefundNotice(
        payment=ObjectRef(refs(refund.get("payment_id"))),
        reference=reference,
        paygate_id=text(refund.get("reference")),
        status=_REFUND_STATUSES[raw],
        amount=amount,
        currency=currency,
        raw_status=raw,
    )


def _dispute_notice(dispute: Mapping[str, Any]) -> DisputeNotice:
    reference = text(dispute.get("id"))
    raw = text(dispute.get("status")) or ""
    if reference is None or raw not in {s.value for s in DisputeStatus}:
        raise MalformedEvent("the dispute has no id or no known status (open, won, lost)")
    return DisputeNotice(
        payment=ObjectRef(refs(dispute.get("payment_id"))),
        reference=reference,
        status=DisputeStatus(raw),
        reason=text(dispute.get("reason")),
        amount=integer(dispute.get("amount")),
        currency=text(dispute.get("currency")),
    )
