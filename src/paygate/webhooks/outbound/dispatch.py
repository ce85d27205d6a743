"""Attempting a delivery: claim it, send it outside any transaction, record what happened.

1. Claim (a short transaction): lock the delivery (SKIP LOCKED: another worker has it),
   check it is still pending and due, count the attempt and push `next_attempt_at` a lease
   ahead. A worker that dies mid-request (SIGKILL) leaves that lease behind; when it lapses
   the sweeper hands the delivery to another job: it is sent at most once more.
2. Send: sign with the endpoint's current secrets (two during a rotation window) and POST.
3. Record (a short transaction): the attempt row; success ends the delivery; a failure
   schedules the next try in the same transaction as its job, or, after the last one, fails
   the delivery and disables an endpoint that failed for the whole schedule (its owners
   are mailed once that commits).

A job may run twice, late or early: every step checks the row first, so nothing is sent
twice by design (only a lost claim's lease leads to one more send).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.models import Company
from paygate.accounts.repository import UserRepository
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.kit.mail import Email, Mailer
from paygate.security import audit
from paygate.security.crypto import Keyring, KeyringError
from paygate.security.ssrf import Resolver, resolve_host
from paygate.settings import Settings
from paygate.webhooks.outbound import sender
from paygate.webhooks.outbound.enqueue import defer_delivery
from paygate.webhooks.outbound.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from paygate.webhooks.outbound.repository import (
    DeliveryRepository,
    EndpointRepository,
    claim_delivery,
    endpoint_of,
    lock_delivery,
)
from paygate.webhooks.outbound.schedule import next_wait
from paygate.webhooks.outbound.secrets import signing_secrets
from paygate.webhooks.outbound.versions import record_version, version_snapshot

logger = structlog.get_logger(__name__)

# A job may start a moment before the time it was scheduled for (clocks, rounding).
EARLY = timedelta(seconds=2)
# How long past the request timeout a claimed attempt is left alone before it counts as lost.
LEASE_MARGIN = timedelta(seconds=60)
UNREADABLE_SECRET = (
    "not sent: the signing secret cannot be decrypted with the configured master keys"
)
ENDPOINT_DISABLED = "not sent: the endpoint is disabled"


@dataclass(frozen=True)
class Claim:
    delivery_id: str
    company_id: str
    endpoint_id: str
    attempt_number: int
    trigger: str
    started_at: datetime
    request: sender.Request | None  # None: it cannot be signed (the error says why)


class Dispatcher:
    def __init__(
        self,
        database: Database,
        keyring: Keyring,
        settings: Settings,
        *,
        resolver: Resolver = resolve_host,
        clock: Callable[[], datetime] = utcnow,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.database = database
        self.keyring = keyring
        self.settings = settings
        self.resolver = resolver
        self.clock = clock
        self.transport = transport

    @property
    def lease(self) -> timedelta:
        return timedelta(seconds=self.settings.webhook_timeout_seconds) + LEASE_MARGIN

    async def deliver(self, delivery_id: str) -> str:
        """Attempt the delivery if it is due; returns what happened (for logs and tests)."""
        claim = await self._claim(delivery_id)
        if claim is None:
            return "skipped"
        if claim.request is None:
            outcome = sender.failed(UNREADABLE_SECRET)
        else:
            outcome = await sender.send(
                claim.request,
                timeout_seconds=self.settings.webhook_timeout_seconds,
                guarded=not self.settings.private_addresses_for_webhook_endpoints,
                resolver=self.resolver,
                transport=self.transport,
            )
        result, notice = await self._record(claim, outcome)
        logger.info(
            "webhook_attempt",
            delivery_id=claim.delivery_id,
            endpoint_id=claim.endpoint_id,
            attempt=claim.attempt_number,
            status_code=outcome.status_code,
            latency_ms=outcome.latency_ms,
            error=outcome.error,
            result=result,
        )
        if notice is not None:
            await Mailer(self.settings).send_quietly(notice)
        return result

    # --- 1. claim ----------------------------------------------------------------------

    async def _claim(self, delivery_id: str) -> Claim | None:
        async with self.database.transaction() as session:
            delivery = await claim_delivery(session, delivery_id)
            now = self.clock()
            if delivery is None or not self._due(delivery, now):
                return None
            endpoint = await endpoint_of(session, delivery)
            if endpoint is None or not endpoint.enabled:
                _finish(delivery, "failed", now, error=ENDPOINT_DISABLED)
                return None
            number = delivery.attempt_count + 1
            delivery.attempt_count = number
            delivery.last_attempt_at = now
            delivery.first_attempt_at = delivery.first_attempt_at or now
            delivery.next_attempt_at = now + self.lease
            return Claim(
                delivery.id,
                delivery.company_id,
                endpoint.id,
                number,
                delivery.trigger,
                now,
                await self._request(session, delivery, endpoint, now),
            )

    @staticmethod
    def _due(delivery: WebhookDelivery, now: datetime) -> bool:
        return (
            delivery.status == "pending"
            and delivery.next_attempt_at is not None
            and delivery.next_attempt_at <= now + EARLY
        )

    async def _request(
        self,
        session: AsyncSession,
        delivery: WebhookDelivery,
        endpoint: WebhookEndpoint,
        now: datetime,
    ) -> sender.Request | None:
        message = await DeliveryRepository(session, delivery.company_id).message(
            delivery.message_id
        )
        try:
            secrets_in_use = signing_secrets(endpoint, self.keyring, now)
        except KeyringError:
            logger.error(
                "webhook_secret_undecryptable", endpoint_id=endpoint.id, key_id=endpoint.key_id
            )
            return None
        return sender.Request(endpoint.url, message.id, message.body, secrets_in_use)

    # --- 3. record -----------------------------------------------------------------------

    async def _record(self, claim: Claim, outcome: sender.Outcome) -> tuple[str, Email | None]:
        async with self.database.transaction() as session:
            delivery = await lock_delivery(session, claim.delivery_id)
            if delivery is None:  # the endpoint was deleted meanwhile, and its log with it
                return "gone", None
            now = self.clock()
            attempt = WebhookAttempt(
                id=new_id("dla"),
                company_id=claim.company_id,
                delivery_id=claim.delivery_id,
                attempt_number=claim.attempt_number,
                trigger=claim.trigger,
                url=claim.request.url if claim.request else "",
                started_at=claim.started_at,
                latency_ms=outcome.latency_ms,
                status_code=outcome.status_code,
                response_body=outcome.response_body,
                error=outcome.error,
                succeeded=outcome.succeeded,
            )
            session.add(attempt)
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            endpoints = EndpointRepository(session, claim.company_id)
            if outcome.succeeded:
                await endpoints.mark_healthy(claim.endpoint_id)
                if delivery.status == "pending":
                    _finish(delivery, "succeeded", now)
                return "succeeded", None
            await endpoints.mark_failing(claim.endpoint_id, claim.started_at)
            # Only the attempt that holds the current claim decides what comes next.
            if delivery.status != "pending" or delivery.attempt_count != claim.attempt_number:
                return "failed", None
            wait = (
                None
                if claim.trigger == "manual"
                else next_wait(
                    claim.attempt_number,
                    overloaded=outcome.overloaded,
                    asked=outcome.retry_after,
                )
            )
            if wait is not None:
                delivery.next_attempt_at = attempt.next_attempt_at = now + wait
                await defer_delivery(session, delivery.id, at=delivery.next_attempt_at)
                return "retrying", None
            _finish(delivery, "failed", now, error=outcome.error)
            if claim.trigger == "manual":
                return "failed", None
            return "failed", await self._disable_if_failing(session, delivery, now)

    async def _disable_if_failing(
        self, session: AsyncSession, delivery: WebhookDelivery, now: datetime
    ) -> Email | None:
        """Disable the endpoint when nothing succeeded since this delivery's first attempt:
        it failed for the whole schedule (about a day). Returns the owners' notice."""
        endpoint = await endpoint_of(session, delivery, for_update=True)
        if (
            endpoint is None
            or not endpoint.enabled
            or endpoint.failing_since is None
            or delivery.first_attempt_at is None
            or endpoint.failing_since > delivery.first_attempt_at
        ):
            return None
        before = version_snapshot(endpoint)
        endpoint.enabled = False
        endpoint.disabled_reason = "failing"
        endpoint.disabled_at = now
        endpoint.updated_at = now
        detail = (
            f"Every delivery attempt since {endpoint.failing_since.isoformat()} failed, "
            f"through the whole retry schedule; the last: {delivery.last_error or 'failed'}."
        )
        # A change of the endpoint's configuration like any other: a version (paygate's).
        await record_version(
            session,
            endpoint,
            before,
            actor=audit.SYSTEM,
            summary="disabled by paygate: every delivery failed for a whole retry schedule",
        )
        await audit.record(
            session,
            company_id=endpoint.company_id,
            actor=audit.SYSTEM,
            origin=None,
            action="webhook_endpoint.disabled",
            object_type="webhook_endpoint",
            object_id=endpoint.id,
            outcome="failure",
            changes={"enabled": {"before": True, "after": False}},
            detail=detail,
        )
        logger.warning("webhook_endpoint_disabled", endpoint_id=endpoint.id)
        return await self._disabled_notice(session, endpoint, detail)

    async def _disabled_notice(
        self, session: AsyncSession, endpoint: WebhookEndpoint, detail: str
    ) -> Email:
        company = await session.get(Company, endpoint.company_id)
        owners = await UserRepository(session).owners_of([endpoint.company_id])
        name = company.name if company else endpoint.company_id
        return Email(
            to=tuple(owners),
            subject=f"paygate: webhook endpoint disabled for {name}",
            text=(
                f"paygate stopped sending events of {name} to the webhook endpoint\n\n"
                f"  {endpoint.url}\n\n"
                f"{detail}\n\n"
                "Events that happen while it is disabled are not queued for it. Fix the "
                "endpoint, enable it again, then redeliver the failed deliveries you need "
                f"from its delivery log:\n\n"
                f"  {self.settings.base_url}/webhook-endpoints/{endpoint.id}\n\n"
                "You receive this because you are an owner of the company in paygate.\n"
            ),
        )


def _finish(
    delivery: WebhookDelivery, status: str, now: datetime, *, error: str | None = None
) -> None:
    delivery.status = status
    delivery.completed_at = now
    delivery.next_attempt_at = None
    if error is not None:
        delivery.last_error = error
