"""Receiving a gateway's webhook: verify, store first, defer processing, answer.

The row (raw body, redacted headers, provider event id, type, verification result,
received time) is written, and the processing job woken, in one transaction; the endpoint
answers 2xx only once it has committed. A verified provider event is stored once per
gateway (INSERT ... ON CONFLICT DO NOTHING on a unique index), so a retry or a concurrent
duplicate is answered 200 and never processed twice. A request that fails verification
is stored as rejected with the reason and answered 400; rejections are rate limited per
gateway (and per IP), and past the limit nothing more is stored.

The verified path is one round trip: one statement stores the event, wakes its job only
if it was stored, and otherwise finds the stored copy (`repository.store_verified`), so it
runs on an autocommit session: that statement is its own transaction. The gateway's row
(its secrets) is read once and kept (`GatewaysAsRead`): the statement stores only while
the row is still the version the request was verified with; otherwise the gateway is read
again and the request verified again. A refusal is decided with a fresh read, and writes
its row and audit entry in one transaction.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.deferral import CoalescedJob
from paygate.kit.deps import Origin
from paygate.kit.errors import Problem, not_found
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.crypto import Keyring
from paygate.security.rate_limits import RateLimits
from paygate.settings import Settings
from paygate.webhooks.inbound.providers import provider_for
from paygate.webhooks.inbound.providers.base import (
    EventIdentity,
    Verdict,
    VerificationUnavailable,
    parse_json_object,
)
from paygate.webhooks.inbound.repository import (
    GatewayAsRead,
    gateway_for_webhook,
    insert_event,
    store_verified,
)
from paygate.webhooks.inbound.verification import (
    redact_headers,
    request_of,
    verify_request,
    webhook_url,
)

logger = structlog.get_logger(__name__)

# The queue of processing jobs. Its jobs are inserted without a NOTIFY (migration 0018):
# the worker polls for them.
QUEUE = "webhooks_received"
# One event's run (a replay's): deferred with the event's id.
TASK_NAME = "webhooks_inbound:process_webhook_event"
# The job that processes received events: a stored event wakes it unless it already waits,
# and it runs every event received and not yet attempted (docs/decisions.md section 26).
RECEIVED_JOB = CoalescedJob(
    "webhooks_inbound:process_received_webhook_events",
    QUEUE,
    queueing_lock="webhooks_received",
    gate=0x7061_7967_6174_6501,  # ASCII "paygate", then 1 (an advisory lock key)
)
# A received event is normally processed within moments; if its job is lost (its worker
# died), the sweeper picks the event up after this long.
RECEIPT_GRACE = timedelta(minutes=2)
# The rate-limit bucket of rejected requests: settings rate_limit_webhook_ip / _account.
RATE_LIMIT_BUCKET = "webhook"


@dataclass(frozen=True)
class Receipt:
    """What the endpoint answers: the stored event (or the one a duplicate repeats), or
    the problem of a refused request (its row committed all the same)."""

    event_id: str | None
    duplicate: bool = False
    problem: Problem | None = None


def signature_refused(reason: str) -> Problem:
    return Problem(400, "webhook-signature-invalid", "Webhook refused", reason)


def verification_unavailable(reason: str) -> Problem:
    return Problem(
        503,
        "webhook-verification-unavailable",
        "Webhook not verified yet",
        f"The webhook could not be verified now ({reason}); send it again later.",
        headers={"Retry-After": "60"},
    )


class GatewaysAsRead:
    """The gateways this process received webhooks for lately, each as it was read with its
    row's version. A request verifies with the copy and stores only if the row is still
    that version (the store statement checks), so a change of secrets is never missed; it
    saves the read. A refusal is only ever decided with the gateway read afresh. A copy is
    kept for `max_age` seconds at most (a row version is a transaction id, which wraps
    around after about four billion transactions)."""

    def __init__(self, size: int = 1024, max_age: float = 300.0) -> None:
        self.size = size
        self.max_age = max_age
        self._held: dict[str, tuple[float, GatewayAsRead]] = {}

    def get(self, gateway_id: str) -> GatewayAsRead | None:
        held = self._held.get(gateway_id)
        if held is None or time.monotonic() - held[0] > self.max_age:
            return None
        return held[1]

    def keep(self, read: GatewayAsRead) -> None:
        self._held.pop(read.gateway.id, None)
        if len(self._held) >= self.size:
            self._held.pop(next(iter(self._held)))  # the oldest kept
        self._held[read.gateway.id] = (time.monotonic(), read)

    def forget(self, gateway_id: str) -> None:
        self._held.pop(gateway_id, None)


# Verifying again because the gateway changed meanwhile: at most this many times.
STALE_READS = 3


class WebhookReceiver:
    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        settings: Settings,
        limits: RateLimits,
        gateways: GatewaysAsRead,
    ) -> None:
        self.database = database
        self.keyring = keyring
        self.settings = settings
        self.limits = limits
        self.gateways = gateways

    async def receive(
        self,
        gateway_id: str,
        body: bytes,
        headers: Iterable[tuple[str, str]],
        origin: Origin,
    ) -> Receipt:
        stored_headers = redact_headers(headers)
        event = parse_json_object(body)
        async with self.database.autocommit() as session:
            read, fresh = self.gateways.get(gateway_id), False
            for _ in range(STALE_READS + 1):
                if read is None:
                    read = await self._read_gateway(session, gateway_id, origin)
                    fresh = True
                gateway = read.gateway
                row, verdict, unavailable = await self._check(gateway, body, stored_headers, event)
                if not verdict.ok and not fresh and not unavailable:
                    read = None  # refused by a kept copy: decide with the gateway as it is
                    continue
                if not verdict.ok:
                    return await self._refuse(
                        gateway, row, verdict, origin, unavailable=unavailable
                    )
                row |= {"status": "pending", "next_attempt_at": row["received_at"] + RECEIPT_GRACE}
                stored = await store_verified(session, row, read.version, RECEIVED_JOB)
                if stored is not None:
                    break
                self.gateways.forget(gateway_id)
                read = None  # changed since it was read: verify again
            else:
                raise Problem(
                    503,
                    "webhook-gateway-changing",
                    "Webhook not stored yet",
                    "The gateway's settings changed while the webhook was verified; send it again.",
                    headers={"Retry-After": "5"},
                )
        if stored.duplicate:
            logger.info(
                "webhook_duplicate",
                gateway_id=gateway.id,
                provider_event_id=row["provider_event_id"],
                event_id=stored.event_id,
            )
            return Receipt(stored.event_id, duplicate=True)
        logger.info(
            "webhook_received",
            gateway_id=gateway.id,
            event_id=stored.event_id,
            event_type=row["event_type"],
            provider_event_id=row["provider_event_id"],
        )
        return Receipt(stored.event_id)

    async def _read_gateway(
        self, session: AsyncSession, gateway_id: str, origin: Origin
    ) -> GatewayAsRead:
        read = await gateway_for_webhook(session, gateway_id)
        if read is None or provider_for(read.gateway.gateway_type) is None:
            self.gateways.forget(gateway_id)
            # Guessing gateway ids costs the guesser its IP's budget.
            await self.limits.hit(RATE_LIMIT_BUCKET, ip=origin.ip)
            raise not_found("gateway that receives webhooks")
        self.gateways.keep(read)
        return read

    async def _check(
        self,
        gateway: Gateway,
        body: bytes,
        stored_headers: dict[str, str],
        event: dict[str, Any] | None,
    ) -> tuple[dict[str, Any], Verdict, bool]:
        """The row to store, the verdict on the request, and whether the verdict is only
        that verification was unavailable."""
        provider = provider_for(gateway.gateway_type)
        assert provider is not None  # a gateway is kept only when it has one
        now = utcnow()
        request = request_of(
            gateway.id, body, stored_headers, webhook_url(self.settings, gateway.id), now
        )
        unavailable = False
        try:
            verdict = await verify_request(
                provider, gateway, request, self.keyring, self.settings, check_time=True
            )
        except VerificationUnavailable as exc:
            verdict, unavailable = Verdict.refused(f"not verified: {exc}"), True
        identity = provider.identify(request, event) if event else EventIdentity(None, None, None)
        if verdict.ok and (not identity.event_id or len(identity.event_id) > 255):
            verdict = Verdict.refused("the signature is valid, but the body names no event id")
        row: dict[str, Any] = {
            "id": new_id("evt"),
            "company_id": gateway.company_id,
            "gateway_id": gateway.id,
            "provider": gateway.gateway_type,
            "provider_event_id": (identity.event_id or "")[:255] or None,
            "event_type": (identity.event_type or "")[:100] or None,
            "occurred_at": identity.occurred_at,
            "received_at": now,
            "body": body,
            "headers": stored_headers,
            "verified": verdict.ok,
            "verification": verdict.detail,
            "attempts": 0,
        }
        return row, verdict, unavailable

    async def _refuse(
        self,
        gateway: Gateway,
        row: dict[str, Any],
        verdict: Verdict,
        origin: Origin,
        *,
        unavailable: bool,
    ) -> Receipt:
        if not unavailable:
            # Over the limit this raises 429 before anything is written.
            await self.limits.hit(RATE_LIMIT_BUCKET, ip=origin.ip, account=gateway.id)
        row |= {"status": "rejected", "next_attempt_at": None}
        async with self.database.transaction() as session:
            stored = await insert_event(session, row)
            await audit.record(
                session,
                company_id=gateway.company_id,
                actor=audit.Actor("anonymous", None, f"{gateway.gateway_type} webhook sender"),
                origin=origin,
                action="webhook.rejected",
                object_type="webhook_event",
                object_id=stored,
                outcome="failure",
                detail=f"Gateway {gateway.id}: {verdict.detail}.",
            )
        logger.warning(
            "webhook_rejected", gateway_id=gateway.id, event_id=stored, reason=verdict.detail
        )
        problem = (
            verification_unavailable(verdict.detail)
            if unavailable
            else signature_refused(f"The webhook was refused: {verdict.detail}.")
        )
        return Receipt(stored, problem=problem)
