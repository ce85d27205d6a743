"""Webhook endpoints: create (secret shown once), change, enable, rotate the secret, delete;
the delivery log, redelivery and the test event. Every change is audited and recorded as a
version (webhooks/outbound/versions.py)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.pagination import PageParams
from paygate.security import audit
from paygate.security.audit_actions import AuditAction
from paygate.security.crypto import Keyring, KeyringError
from paygate.security.history import ConfigVersion
from paygate.security.ssrf import Resolver, UnsafeURL, check_outbound_url, resolve_host
from paygate.settings import Settings
from paygate.webhooks.outbound import secrets as signing
from paygate.webhooks.outbound.enqueue import add_delivery, add_message, defer_delivery
from paygate.webhooks.outbound.events import TEST_EVENT_TYPE
from paygate.webhooks.outbound.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from paygate.webhooks.outbound.repository import (
    DeliveryRepository,
    EndpointRepository,
    attempts_of,
    bodies_of,
)
from paygate.webhooks.outbound.schemas import (
    EndpointCreate,
    EndpointUpdate,
    SecretRotate,
)
from paygate.webhooks.outbound.sender import url_reason
from paygate.webhooks.outbound.versions import (
    OBJECT_TYPE,
    history_of,
    record_version,
    summary_of,
    version_snapshot,
)


@dataclass(frozen=True)
class DeliveryView:
    delivery: WebhookDelivery
    payload: str
    attempts: list[WebhookAttempt]


def snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """What the audit log compares; the secret only as when it changed, never its value."""
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "secret_changed_at": endpoint.secret_hint.get("changed_at"),
        "previous_secret_valid_until": endpoint.secret_hint.get("previous_valid_until"),
    }


class EndpointService:
    def __init__(
        self,
        session: AsyncSession,
        keyring: Keyring,
        settings: Settings,
        auth: AuthContext,
        *,
        resolver: Resolver = resolve_host,
    ) -> None:
        self.session = session
        self.keyring = keyring
        self.settings = settings
        self.auth = auth
        self.resolver = resolver
        self.endpoints = EndpointRepository(session, auth.company_id)
        self.deliveries = DeliveryRepository(session, auth.company_id)

    # --- endpoints -------------------------------------------------------------------------

    async def list_all(self) -> list[WebhookEndpoint]:
        return list(await self.endpoints.listing())

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        return await self.endpoints.get(endpoint_id)

    async def _check_url(self, url: str) -> None:
        """https and a public address outside development (SSRF, security/ssrf.py); the
        same guard runs again on every delivery, when the name is resolved to send."""
        guarded = not self.settings.private_addresses_for_webhook_endpoints
        try:
            await check_outbound_url(url, live=guarded, resolver=self.resolver)
        except UnsafeURL as exc:
            raise validation_failed([FieldError("url", url_reason(exc), "unsafe_url")]) from None

    def _check_secret(self, value: str | None) -> str:
        if value is None:
            return signing.generate_secret()
        problem = signing.secret_problem(value)
        if problem:
            raise validation_failed([FieldError("secret", problem, "invalid")])
        return value

    async def create(self, request: EndpointCreate) -> tuple[WebhookEndpoint, str]:
        """The endpoint and its signing secret (returned this once, never stored in clear)."""
        await self._check_url(request.url)
        secret = self._check_secret(request.secret)
        now = utcnow()
        endpoint = WebhookEndpoint(
            id=new_id("ep"),
            company_id=self.auth.company_id,
            url=request.url,
            description=request.description or None,
            event_types=_unique(request.event_types),
            enabled=True if request.enabled is None else request.enabled,
            disabled_reason=None if request.enabled is not False else "manual",
            disabled_at=None if request.enabled is not False else now,
            secret_hint=signing.hint(secret, now, None),
        )
        signing.seal(endpoint, self.keyring, signing.SigningSecrets(secret, None))
        await self.endpoints.add(endpoint)
        version = await self._record(endpoint, None, "created")
        await self.audit_entry(
            "webhook_endpoint.created",
            endpoint,
            changes=audit.diff({}, snapshot(endpoint)),
            detail=_detail(version),
        )
        return endpoint, secret

    async def update(self, endpoint_id: str, request: EndpointUpdate) -> WebhookEndpoint:
        endpoint = await self.endpoints.get(endpoint_id, for_update=True)
        before, changes = await self.apply(endpoint, request)
        version = await self._record(endpoint, before, summary_of(changes))
        await self.audit_entry(
            "webhook_endpoint.updated", endpoint, changes=changes, detail=_detail(version)
        )
        return endpoint

    async def apply(
        self, endpoint: WebhookEndpoint, request: EndpointUpdate
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Check and apply an update to an endpoint the caller has locked: an edit, or a
        version put back. Returns its version snapshot from before and the audit diff."""
        before, before_version = snapshot(endpoint), version_snapshot(endpoint)
        if request.url is not None and request.url != endpoint.url:
            await self._check_url(request.url)
            endpoint.url = request.url
        if "description" in request.model_fields_set:
            endpoint.description = request.description or None
        if request.event_types is not None:
            endpoint.event_types = _unique(request.event_types)
        if request.enabled is not None:
            _set_enabled(endpoint, request.enabled)
        endpoint.updated_at = utcnow()
        await self.session.flush()
        return before_version, audit.diff(before, snapshot(endpoint))

    async def set_enabled(self, endpoint_id: str, enabled: bool) -> WebhookEndpoint:
        endpoint = await self.endpoints.get(endpoint_id, for_update=True)
        before, was = version_snapshot(endpoint), endpoint.enabled
        _set_enabled(endpoint, enabled)
        endpoint.updated_at = utcnow()
        await self.session.flush()
        version = await self._record(endpoint, before, "enabled" if enabled else "disabled")
        await self.audit_entry(
            "webhook_endpoint.enabled" if enabled else "webhook_endpoint.disabled",
            endpoint,
            changes={"enabled": {"before": was, "after": enabled}},
            detail=_detail(version),
        )
        return endpoint

    async def _record(
        self, endpoint: WebhookEndpoint, before: dict[str, Any] | None, summary: str
    ) -> ConfigVersion | None:
        """The change as a new version (under the row lock the change holds)."""
        return await record_version(
            self.session, endpoint, before, actor=self.auth.actor, summary=summary
        )

    async def rotate_secret(
        self, endpoint_id: str, request: SecretRotate
    ) -> tuple[WebhookEndpoint, str]:
        """A new secret; the old one keeps signing (beside it) for the grace period."""
        endpoint = await self.endpoints.get(endpoint_id, for_update=True)
        new = self._check_secret(request.secret)
        now = utcnow()
        hours = (
            self.settings.credential_grace_hours
            if request.grace_period_hours is None
            else request.grace_period_hours
        )
        until = signing.window_end(now, timedelta(hours=hours))
        try:
            old: str | None = signing.open_secrets(endpoint, self.keyring).current
        except KeyringError:
            old = None  # unreadable: nothing can sign with it anyway
        before, before_version = snapshot(endpoint), version_snapshot(endpoint)
        keep = old if until is not None else None
        signing.seal(endpoint, self.keyring, signing.SigningSecrets(new, keep))
        endpoint.previous_secret_expires_at = until if keep else None
        endpoint.secret_hint = signing.hint(new, now, until if keep else None)
        endpoint.updated_at = now
        await self.session.flush()
        detail = (
            f"Deliveries are signed with the previous secret too until {until.isoformat()}."
            if keep and until
            else "The previous secret no longer signs anything."
        )
        version = await self._record(endpoint, before_version, "signing secret rotated")
        await self.audit_entry(
            "webhook_endpoint.secret_rotated",
            endpoint,
            changes=audit.diff(before, snapshot(endpoint)),
            detail=f"{_detail(version)} {detail}" if version else detail,
        )
        return endpoint, new

    async def delete(self, endpoint_id: str) -> None:
        """Delete it with its delivery log; jobs still queued for it find nothing to do."""
        endpoint = await self.endpoints.get(endpoint_id, for_update=True)
        await self.audit_entry(
            "webhook_endpoint.deleted", endpoint, changes=audit.diff(snapshot(endpoint), {})
        )
        await self.session.delete(endpoint)
        await self.session.flush()
        await history_of(self.session, self.auth.company_id).forget(endpoint_id)

    # --- deliveries ------------------------------------------------------------------------

    async def deliveries_of(
        self,
        endpoint_id: str,
        params: PageParams,
        *,
        status: str | None = None,
        event_type: str | None = None,
    ) -> tuple[list[WebhookDelivery], str | None]:
        await self.endpoints.get(endpoint_id)
        rows, cursor = await self.deliveries.of_endpoint(
            endpoint_id, params, status=status, event_type=event_type
        )
        return list(rows), cursor

    async def attempts_of(
        self, deliveries: list[WebhookDelivery]
    ) -> dict[str, list[WebhookAttempt]]:
        return await attempts_of(self.session, self.auth.company_id, [d.id for d in deliveries])

    async def payloads_of(self, deliveries: list[WebhookDelivery]) -> dict[str, str]:
        """The body each delivery sends, by message id."""
        ids = list({d.message_id for d in deliveries})
        return await bodies_of(self.session, self.auth.company_id, ids)

    async def delivery(self, endpoint_id: str, delivery_id: str) -> DeliveryView:
        delivery = await self._delivery_of(endpoint_id, delivery_id)
        message = await self.deliveries.message(delivery.message_id)
        attempts = list(await self.deliveries.attempts(delivery.id))
        return DeliveryView(delivery, message.body, attempts)

    async def _delivery_of(
        self, endpoint_id: str, delivery_id: str, *, for_update: bool = False
    ) -> WebhookDelivery:
        delivery = await self.deliveries.get(delivery_id, for_update=for_update)
        if delivery.endpoint_id != endpoint_id:
            raise Problem(404, "not-found", "Not found", "No such webhook delivery.")
        return delivery

    async def redeliver(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        """Try again now. A pending delivery keeps its schedule; an ended one gets one manual
        attempt (the same webhook-id: a receiver that got it before can tell)."""
        endpoint = await self.endpoints.get(endpoint_id)
        if not endpoint.enabled:
            raise Problem(
                409,
                "webhook-endpoint-disabled",
                "Endpoint disabled",
                "The endpoint is disabled: enable it, then redeliver.",
            )
        delivery = await self._delivery_of(endpoint_id, delivery_id, for_update=True)
        now = utcnow()
        if delivery.status != "pending":
            delivery.status = "pending"
            delivery.trigger = "manual"
            delivery.completed_at = None
        delivery.next_attempt_at = now
        await self.session.flush()
        await defer_delivery(self.session, delivery.id)
        await audit.record_by(
            self.session,
            self.auth,
            action="webhook_delivery.redelivered",
            object_type="webhook_delivery",
            object_id=delivery.id,
            detail=f"{delivery.event_type} to endpoint {endpoint.id}",
        )
        return delivery

    async def send_test(self, endpoint_id: str) -> WebhookDelivery:
        """A `webhook.test` event to this endpoint only (whatever it subscribes to)."""
        endpoint = await self.endpoints.get(endpoint_id)
        if not endpoint.enabled:
            raise Problem(
                409,
                "webhook-endpoint-disabled",
                "Endpoint disabled",
                "The endpoint is disabled: enable it to send a test event.",
            )
        now = utcnow()
        data = {
            "endpoint_id": endpoint.id,
            "message": "A test event from paygate: your endpoint verified and answered it.",
        }
        message = await add_message(self.session, self.auth.company_id, TEST_EVENT_TYPE, data, now)
        delivery_id = await add_delivery(self.session, message, endpoint)
        await self.audit_entry(
            "webhook_endpoint.test_sent", endpoint, detail=f"delivery {delivery_id}"
        )
        return await self.deliveries.get(delivery_id)

    async def audit_entry(
        self, action: AuditAction, endpoint: WebhookEndpoint, **fields: Any
    ) -> None:
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type=OBJECT_TYPE,
            object_id=endpoint.id,
            **fields,
        )


def _detail(version: ConfigVersion | None) -> str | None:
    return version.detail() if version else None


def _unique(values: list[Any]) -> list[str]:
    return list(dict.fromkeys(str(v.value if hasattr(v, "value") else v) for v in values))


def _set_enabled(endpoint: WebhookEndpoint, enabled: bool) -> None:
    if enabled == endpoint.enabled:
        return
    endpoint.enabled = enabled
    if enabled:
        # A fresh start: the failures that disabled it are forgotten.
        endpoint.disabled_reason = None
        endpoint.disabled_at = None
        endpoint.failing_since = None
    else:
        endpoint.disabled_reason = "manual"
        endpoint.disabled_at = utcnow()


def previous_until(endpoint: WebhookEndpoint, now: datetime | None = None) -> datetime | None:
    return signing.previous_valid_until(endpoint, now or utcnow())
