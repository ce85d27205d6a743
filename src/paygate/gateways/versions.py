"""Gateway versions: every change to a gateway's configuration is a version in the
configuration history (security/history.py), and a version's settings can be put back.

A version holds `Gateway.version_snapshot()`: the settings in clear and each secret as its
mask and when it changed, never a secret. So a restore puts back the settings and keeps
the credentials the gateway has now, and its answer and audit entry say so.

Every version is recorded by the change itself, in its transaction, while it holds the
gateway's row lock (a new gateway is visible to no one else yet).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import GatewayType, GatewayTypeSpec
from paygate.gateways.adapters.registry import spec_for
from paygate.gateways.models import Gateway
from paygate.gateways.schemas import GatewayUpdate
from paygate.kit.errors import Problem, field_errors_from_pydantic, validation_failed
from paygate.security import audit
from paygate.security.history import (
    ConfigHistory,
    ConfigVersion,
    Restored,
    listed,
    summary_of_edits,
)

if TYPE_CHECKING:
    from paygate.gateways.service import GatewayService

OBJECT_TYPE = "gateway"

# The words of a version's summary, in the order the form shows the fields; the
# configuration fields (by their labels) come between the two groups.
_BEFORE_CONFIGURATION = {
    "name": "name",
    "public_label": "label for customers",
    "environment": "environment",
}
_AFTER_CONFIGURATION = {
    "supported_currencies": "currencies",
    "min_amount": "minimum amount",
    "max_amount": "maximum amount",
    "priority": "priority",
    "payment_method_types": "payment methods",
}


def history_of(session: AsyncSession, company_id: str) -> ConfigHistory:
    return ConfigHistory(session, company_id, OBJECT_TYPE)


def _lower_first(label: str) -> str:
    """ "Secret key" -> "secret key"; "API base URL" stays as it is."""
    return label[:1].lower() + label[1:] if label[1:2].islower() else label


def summary_of(changes: dict[str, Any], spec: GatewayTypeSpec) -> str:
    """A change in plain words, from its audit diff (`Gateway.snapshot()`): "name and
    priority changed; secret key replaced; disabled"."""
    edited = [words for key, words in _BEFORE_CONFIGURATION.items() if key in changes]
    secrets: list[str] = []
    for field in spec.fields:
        change = changes.get(f"configuration.{field.name}")
        if change is None:
            continue
        label = _lower_first(field.label)
        if field.secret:
            secrets.append(f"{label} {'added' if change['before'] is None else 'replaced'}")
        else:
            edited.append(label)
    edited += [words for key, words in _AFTER_CONFIGURATION.items() if key in changes]
    parts = [summary_of_edits(edited) or ""] if edited else []
    parts += secrets
    if "enabled" in changes:
        parts.append("enabled" if changes["enabled"]["after"] else "disabled")
    return "; ".join(parts) or "saved without changes"


async def record_version(
    session: AsyncSession,
    gateway: Gateway,
    before: dict[str, Any] | None,
    *,
    actor: audit.Actor,
    summary: str,
    restored_from: int | None = None,
) -> ConfigVersion | None:
    """Record the gateway as it now is (`before`: its version snapshot before the change,
    None when new); None when nothing a version shows changed."""
    return await history_of(session, gateway.company_id).record_change(
        gateway.id,
        before,
        gateway.version_snapshot(),
        actor=actor,
        summary=summary,
        restored_from=restored_from,
    )


def restore_request(snapshot: dict[str, Any], spec: GatewayTypeSpec) -> GatewayUpdate:
    """A version's settings as the update that puts them back: every setting given (an
    optional one the version did not have is cleared), every secret left out (kept)."""
    configuration = {
        field.name: snapshot["configuration"].get(field.name, "")
        for field in spec.fields
        if not field.secret
    }
    data = {
        "name": snapshot["name"],
        "public_label": snapshot["public_label"],
        "environment": snapshot["environment"],
        "enabled": snapshot["enabled"],
        "configuration": configuration,
        "supported_currencies": snapshot["supported_currencies"],
        "min_amount": snapshot["min_amount"],
        "max_amount": snapshot["max_amount"],
        "priority": snapshot["priority"],
        "payment_method_types": snapshot["payment_method_types"],
    }
    try:
        return GatewayUpdate.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(field_errors_from_pydantic(exc.errors())) from None


def kept_note(kept: Sequence[str], spec: GatewayTypeSpec) -> str:
    """What a restore says about the credentials it did not touch, by their labels."""
    if not kept:
        return "Versions hold no secrets; this gateway has none to keep."
    labels = [_lower_first(f.label) for f in spec.fields if f.name in kept]
    verb = "was" if len(labels) == 1 else "were"
    return f"Versions hold no secrets: the current {listed(labels)} {verb} kept."


class GatewayVersions:
    """Read a gateway's versions and restore one (through the gateway service's checks)."""

    def __init__(self, gateways: GatewayService) -> None:
        self.gateways = gateways
        self.history = history_of(gateways.session, gateways.auth.company_id)

    async def versions(self, gateway_id: str) -> tuple[Gateway, Sequence[ConfigVersion]]:
        """Newest first; an archived gateway's too (it is kept for its history)."""
        gateway = await self.gateways.gateways.get_kept(gateway_id)
        return gateway, await self.history.versions(gateway.id)

    async def version(self, gateway_id: str, number: int) -> ConfigVersion:
        gateway = await self.gateways.gateways.get_kept(gateway_id)
        return await self.history.get(gateway.id, number)

    async def restore(self, gateway_id: str, number: int) -> Restored[Gateway]:
        """Put the settings of version `number` back, keeping the current credentials;
        recorded as a new version (restored_from) and audited."""
        gateway = await self.gateways.gateways.get_kept(gateway_id, for_update=True)
        if gateway.archived_at is not None:
            raise Problem(
                409,
                "gateway-archived",
                "Gateway archived",
                f"Gateway {gateway.id} is archived (payments refer to it): it is kept for its "
                "history and can no longer be changed. Add a new gateway instead.",
            )
        restored = await self.history.get(gateway.id, number)
        spec = spec_for(GatewayType(gateway.gateway_type))
        before, before_version = gateway.snapshot(), gateway.version_snapshot()
        await self.gateways.apply(gateway, restore_request(restored.snapshot, spec))
        version = await record_version(
            self.gateways.session,
            gateway,
            before_version,
            actor=self.gateways.auth.actor,
            summary=f"restored version {number}",
            restored_from=number,
        )
        assert version is not None  # a restore always makes a version
        kept = sorted(gateway.secret_hints or {})
        note = kept_note(kept, spec)
        await self.gateways.audit_entry(
            "gateway.restored",
            gateway,
            changes=audit.diff(before, gateway.snapshot(), secret_keys=secret_paths(spec)),
            detail=f"{version.detail()} {note}",
        )
        return Restored(gateway, version, kept, note)


def secret_paths(spec: GatewayTypeSpec) -> list[str]:
    """Where the secrets are in `Gateway.snapshot()`: an audit diff shows only that they
    changed."""
    return [f"configuration.{f.name}" for f in spec.fields if f.secret]
