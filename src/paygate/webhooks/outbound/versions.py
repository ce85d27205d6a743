"""Webhook endpoint versions: every change to an endpoint is a version in the configuration
history (security/history.py), and a version's settings can be put back.

A version holds the URL, description, event types and whether the endpoint is enabled, and
the signing secret only as its mask and when it changed. So a restore puts back the
settings and keeps the secret the endpoint signs with now (a receiver verifies with it),
and its answer and audit entry say so.

Every version is recorded by the change itself, in its transaction, while it holds the
endpoint's row lock (a new endpoint is visible to no one else yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.errors import field_errors_from_pydantic, validation_failed
from paygate.security import audit
from paygate.security.audit_object_types import AuditObjectType
from paygate.security.history import ConfigHistory, ConfigVersion, Restored, summary_of_edits
from paygate.webhooks.outbound.models import WebhookEndpoint
from paygate.webhooks.outbound.schemas import EndpointUpdate

if TYPE_CHECKING:
    from paygate.webhooks.outbound.service import EndpointService

# Also the object type of its audit entries.
OBJECT_TYPE: AuditObjectType = "webhook_endpoint"
KEPT = ["signing_secret"]
KEPT_NOTE = "Versions hold no secrets: the current signing secret was kept."
_WORDS = {"url": "URL", "description": "description", "event_types": "events"}


def history_of(session: AsyncSession, company_id: str) -> ConfigHistory:
    return ConfigHistory(session, company_id, OBJECT_TYPE)


def version_snapshot(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """An endpoint as a version keeps it: the secret as its mask and change time only (the
    end of a rotation window is no new version)."""
    return {
        "url": endpoint.url,
        "description": endpoint.description,
        "event_types": list(endpoint.event_types),
        "enabled": endpoint.enabled,
        "secret": {
            "masked": endpoint.secret_hint["masked"],
            "changed_at": endpoint.secret_hint["changed_at"],
        },
    }


def summary_of(changes: dict[str, Any]) -> str:
    """An edit in plain words, from its audit diff: "URL and events changed; disabled"."""
    parts = [summary_of_edits([w for key, w in _WORDS.items() if key in changes]) or ""]
    if "enabled" in changes:
        parts.append("enabled" if changes["enabled"]["after"] else "disabled")
    return "; ".join(part for part in parts if part) or "saved without changes"


async def record_version(
    session: AsyncSession,
    endpoint: WebhookEndpoint,
    before: dict[str, Any] | None,
    *,
    actor: audit.Actor,
    summary: str,
    restored_from: int | None = None,
) -> ConfigVersion | None:
    """Record the endpoint as it now is (`before`: its version snapshot before the change,
    None when new); None when nothing a version shows changed."""
    return await history_of(session, endpoint.company_id).record_change(
        endpoint.id,
        before,
        version_snapshot(endpoint),
        actor=actor,
        summary=summary,
        restored_from=restored_from,
    )


def restore_request(snapshot: dict[str, Any]) -> EndpointUpdate:
    """A version's settings as the update that puts them back (checked like an edit: an
    event type paygate no longer sends is refused with the field named)."""
    data = {key: snapshot[key] for key in ("url", "description", "event_types", "enabled")}
    data["description"] = data["description"] or ""
    try:
        return EndpointUpdate.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(field_errors_from_pydantic(exc.errors())) from None


class EndpointVersions:
    """Read an endpoint's versions and restore one (through the endpoint service's checks)."""

    def __init__(self, endpoints: EndpointService) -> None:
        self.endpoints = endpoints
        self.history = history_of(endpoints.session, endpoints.auth.company_id)

    async def versions(self, endpoint_id: str) -> tuple[WebhookEndpoint, Sequence[ConfigVersion]]:
        """Newest first."""
        endpoint = await self.endpoints.get(endpoint_id)
        return endpoint, await self.history.versions(endpoint.id)

    async def version(self, endpoint_id: str, number: int) -> ConfigVersion:
        endpoint = await self.endpoints.get(endpoint_id)
        return await self.history.get(endpoint.id, number)

    async def restore(self, endpoint_id: str, number: int) -> Restored[WebhookEndpoint]:
        """Put the settings of version `number` back, keeping the current signing secret;
        recorded as a new version (restored_from) and audited."""
        endpoint = await self.endpoints.endpoints.get(endpoint_id, for_update=True)
        restored = await self.history.get(endpoint.id, number)
        before, changes = await self.endpoints.apply(endpoint, restore_request(restored.snapshot))
        version = await record_version(
            self.endpoints.session,
            endpoint,
            before,
            actor=self.endpoints.auth.actor,
            summary=f"restored version {number}",
            restored_from=number,
        )
        assert version is not None  # a restore always makes a version
        await self.endpoints.audit_entry(
            "webhook_endpoint.restored",
            endpoint,
            changes=changes,
            detail=f"{version.detail()} {KEPT_NOTE}",
        )
        return Restored(endpoint, version, list(KEPT), KEPT_NOTE)
