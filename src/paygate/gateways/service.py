"""Gateway configurations: create, update, toggle, test and delete, each versioned and
audited. The checks live in configuration.py, reaching a gateway in connection.py, and the
batch jobs over every gateway's stored secrets in resealing.py."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.gateways.adapters.base import AdapterConfig, Environment, GatewayType, GatewayTypeSpec
from paygate.gateways.adapters.registry import spec_for
from paygate.gateways.configuration import (
    DEFAULT_CURRENCIES,
    CheckedConfiguration,
    check_commercial_terms,
    check_configuration,
    check_outbound_addresses,
    mask,
    unique_currencies,
)
from paygate.gateways.connection import (
    ConnectionResult,
    adapter_config,
    envelope_of,
    probe_connection,
    secrets_of,
)
from paygate.gateways.credentials import Envelope, accepted_previous_until, grace_end, next_expiry
from paygate.gateways.models import Gateway
from paygate.gateways.repository import GatewayRepository
from paygate.gateways.schemas import GatewayCreate, GatewayFields, GatewayUpdate
from paygate.gateways.versions import history_of, record_version, secret_paths, summary_of
from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.audit_actions import AuditAction
from paygate.security.crypto import Keyring, KeyringError, SealedSecrets
from paygate.security.history import ConfigVersion
from paygate.security.ssrf import Resolver, resolve_host
from paygate.settings import Settings


class GatewayService:
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
        self.gateways = GatewayRepository(session, auth.company_id)

    # --- reading -----------------------------------------------------------------

    async def list_all(self) -> list[Gateway]:
        return list(await self.gateways.listing())

    async def get(self, gateway_id: str) -> Gateway:
        return await self.gateways.get(gateway_id)

    def secrets_of(self, gateway: Gateway) -> dict[str, str]:
        return secrets_of(gateway, self.keyring)

    def adapter_config(self, gateway: Gateway) -> AdapterConfig:
        return adapter_config(gateway, self.keyring, self.settings, self.resolver)

    def credentials_readable(self, gateway: Gateway) -> bool:
        """Whether the configured master keys open this gateway's secrets (none returned)."""
        return self.keyring.readable(
            SealedSecrets(gateway.key_id, gateway.wrapped_data_key, gateway.secret_ciphertext),
            gateway.aad(),
        )

    # --- writing -----------------------------------------------------------------

    async def _check_addresses(
        self, spec: GatewayTypeSpec, environment: Environment, public: Mapping[str, str]
    ) -> None:
        """Refuse URLs that point at private addresses (SSRF), with the field named."""
        await check_outbound_addresses(
            spec,
            environment,
            public,
            self.resolver,
            private_test_allowed=self.settings.private_addresses_for_test_gateways,
        )

    async def create(self, request: GatewayCreate) -> Gateway:
        spec = spec_for(request.gateway_type)
        environment = request.environment or Environment.TEST
        checked = check_configuration(spec, environment, request.configuration or {})
        await self._check_addresses(spec, environment, checked.public)
        gateway = Gateway(
            id=new_id("gw"),
            company_id=self.auth.company_id,
            name=request.name or spec.display_name,
            public_label=request.public_label or None,
            gateway_type=spec.type.value,
            environment=environment.value,
            enabled=True if request.enabled is None else request.enabled,
            supported_currencies=unique_currencies(
                request.supported_currencies or DEFAULT_CURRENCIES
            ),
            min_amount=request.min_amount,
            max_amount=request.max_amount,
            priority=100 if request.priority is None else request.priority,
            payment_method_types=list(request.payment_method_types or spec.payment_method_types),
            secret_hints={},
        )
        check_commercial_terms(spec, gateway)
        self._store(gateway, spec, checked, Envelope(checked.secrets, {}), {}, utcnow())
        await self.gateways.add(gateway)
        version = await self._record(gateway, None, "created")
        await self.audit_entry(
            "gateway.created",
            gateway,
            changes=audit.diff({}, gateway.snapshot(), secret_keys=secret_paths(spec)),
            detail=version.detail() if version else None,
        )
        return gateway

    async def update(self, gateway_id: str, request: GatewayUpdate) -> Gateway:
        gateway = await self.gateways.get(gateway_id, for_update=True)
        spec = spec_for(GatewayType(gateway.gateway_type))
        before, before_version = gateway.snapshot(), gateway.version_snapshot()
        changed_secrets, until = await self.apply(gateway, request)
        paths = secret_paths(spec)
        changes = audit.diff(before, gateway.snapshot(), secret_keys=paths)
        version = await self._record(gateway, before_version, summary_of(changes, spec))
        await self.audit_entry(
            "gateway.updated",
            gateway,
            changes=changes,
            detail=version.detail() if version else None,
        )
        if changed_secrets:
            # A security change of its own, easy to find: which credentials, and their grace.
            await self.audit_entry(
                "gateway.credentials_rotated",
                gateway,
                changes={
                    path: change
                    for path, change in changes.items()
                    if path in paths or path.startswith("previous_credentials.")
                },
                detail=_rotation_detail(sorted(changed_secrets), until),
            )
        return gateway

    async def apply(
        self, gateway: Gateway, request: GatewayUpdate
    ) -> tuple[set[str], dict[str, str]]:
        """Check and apply an update to a gateway the caller has locked: an edit, or a
        version put back. Returns the secrets replaced and until when each previous one
        is accepted. Raises a 422 problem, with the fields named, before changing a thing
        that is kept (the caller's savepoint or transaction rolls the rest back)."""
        spec = spec_for(GatewayType(gateway.gateway_type))
        now = utcnow()
        environment = request.environment or Environment(gateway.environment)
        stored = self._stored_envelope_or_empty(gateway)
        checked = check_configuration(
            spec,
            environment,
            request.configuration or {},
            stored_public=gateway.public_config,
            stored_secrets=stored.current,
        )
        await self._check_addresses(spec, environment, checked.public)
        self._apply_terms(gateway, request)
        gateway.environment = environment.value
        check_commercial_terms(spec, gateway)
        grace = timedelta(
            hours=self.settings.credential_grace_hours
            if request.previous_secret_grace_hours is None
            else request.previous_secret_grace_hours
        )
        kept, until = _previous_after_update(gateway, stored, checked, now, grace)
        self._store(gateway, spec, checked, Envelope(checked.secrets, kept), until, now)
        gateway.updated_at = now
        await self.session.flush()
        return checked.changed_secrets, until

    async def _record(
        self, gateway: Gateway, before: dict[str, Any] | None, summary: str
    ) -> ConfigVersion | None:
        """The change as a new version (under the row lock the change holds)."""
        return await record_version(
            self.session, gateway, before, actor=self.auth.actor, summary=summary
        )

    def _stored_envelope_or_empty(self, gateway: Gateway) -> Envelope:
        """The stored secrets; none when they cannot be decrypted, so an update re-enters them."""
        try:
            return envelope_of(gateway, self.keyring)
        except KeyringError:
            return Envelope({}, {})

    def _apply_terms(self, gateway: Gateway, request: GatewayFields) -> None:
        if request.name is not None:
            gateway.name = request.name
        if request.enabled is not None:
            gateway.enabled = request.enabled
        if request.supported_currencies is not None:
            gateway.supported_currencies = unique_currencies(request.supported_currencies)
        fields = request.model_fields_set
        if "public_label" in fields:
            gateway.public_label = request.public_label or None
        if "min_amount" in fields:
            gateway.min_amount = request.min_amount
        if "max_amount" in fields:
            gateway.max_amount = request.max_amount
        if request.priority is not None:
            gateway.priority = request.priority
        if request.payment_method_types is not None:
            gateway.payment_method_types = list(request.payment_method_types)

    def _store(
        self,
        gateway: Gateway,
        spec: GatewayTypeSpec,
        checked: CheckedConfiguration,
        envelope: Envelope,
        previous_until: dict[str, str],
        at: datetime,
    ) -> None:
        now = at.isoformat()
        sealed = self.keyring.seal(envelope.plaintext(), gateway.aad())
        gateway.key_id = sealed.key_id
        gateway.wrapped_data_key = sealed.wrapped_data_key
        gateway.secret_ciphertext = sealed.ciphertext
        gateway.public_config = checked.public
        hints: dict[str, dict[str, str]] = {}
        for name, value in checked.secrets.items():
            field = spec.field(name)
            assert field is not None
            previous = (gateway.secret_hints or {}).get(name)
            changed_at = (
                previous["changed_at"] if previous and name not in checked.changed_secrets else now
            )
            hints[name] = {"masked": mask(value, field), "changed_at": changed_at}
            if name in envelope.previous:
                hints[name]["previous_valid_until"] = previous_until[name]
        gateway.secret_hints = hints
        gateway.previous_credentials_expire_at = next_expiry(hints)

    async def set_enabled(self, gateway_id: str, enabled: bool) -> Gateway:
        gateway = await self.gateways.get(gateway_id, for_update=True)
        before = gateway.version_snapshot()
        if gateway.enabled != enabled:
            gateway.enabled = enabled
            gateway.updated_at = utcnow()
            await self.session.flush()
        action: AuditAction = "gateway.enabled" if enabled else "gateway.disabled"
        version = await self._record(gateway, before, "enabled" if enabled else "disabled")
        await self.audit_entry(
            action,
            gateway,
            changes={"enabled": {"before": not enabled, "after": enabled}},
            detail=version.detail() if version else None,
        )
        return gateway

    async def delete(self, gateway_id: str) -> Literal["deleted", "archived"]:
        """Delete; a gateway that other rows (payments) refer to is archived instead."""
        gateway = await self.gateways.get(gateway_id, for_update=True)
        before = gateway.version_snapshot()
        version: ConfigVersion | None = None
        try:
            async with self.session.begin_nested():
                await self.session.delete(gateway)
                await self.session.flush()
            outcome: Literal["deleted", "archived"] = "deleted"
            await history_of(self.session, self.auth.company_id).forget(gateway_id)
        except IntegrityError:
            gateway = await self.gateways.get(gateway_id, for_update=True)
            gateway.archived_at = utcnow()
            gateway.enabled = False
            await self.session.flush()
            outcome = "archived"
            version = await self._record(gateway, before, "archived: payments refer to it")
        await self.audit_entry(
            "gateway.deleted" if outcome == "deleted" else "gateway.archived",
            gateway,
            detail=version.detail() if version else None,
        )
        return outcome

    async def test_connection(self, gateway_id: str) -> ConnectionResult:
        gateway = await self.gateways.get(gateway_id)
        result = await probe_connection(gateway, self.keyring, self.settings, self.resolver)
        gateway = await self.gateways.get(gateway_id, for_update=True)
        gateway.last_test_at = utcnow()
        gateway.last_test_ok = result.ok
        gateway.last_test_latency_ms = result.latency_ms
        gateway.last_test_message = result.message
        await self.session.flush()
        await self.audit_entry(
            "gateway.tested",
            gateway,
            outcome="success" if result.ok else "failure",
            detail=result.message,
        )
        return result

    async def audit_entry(self, action: AuditAction, gateway: Gateway, **fields: Any) -> None:
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type="gateway",
            object_id=gateway.id,
            object_name=gateway.name,
            **fields,
        )


def _previous_after_update(
    gateway: Gateway,
    stored: Envelope,
    checked: CheckedConfiguration,
    now: datetime,
    grace: timedelta,
) -> tuple[dict[str, str], dict[str, str]]:
    """The previous secrets to keep after an update, and until when each is accepted.

    A replaced secret becomes the previous one for `grace` (none with a grace of 0, e.g.
    after a leak); an unchanged field keeps its previous one while that grace lasts, and
    an expired one is dropped here: every write wipes what has expired.
    """
    kept: dict[str, str] = {}
    until: dict[str, str] = {}
    for name in checked.secrets:
        if name in checked.changed_secrets:
            old = stored.current.get(name)
            end = grace_end(now, grace)
            if old and end:
                kept[name], until[name] = old, end
            continue
        still = accepted_previous_until(gateway, name, now)
        if still is not None and name in stored.previous:
            kept[name], until[name] = stored.previous[name], still.isoformat()
    return kept, until


def _rotation_detail(fields: list[str], until: dict[str, str]) -> str:
    parts = []
    for name in fields:
        if name in until:
            parts.append(f"{name} replaced; the previous one is accepted until {until[name]}")
        else:
            parts.append(f"{name} replaced; the previous one is no longer accepted")
    return ". ".join(parts) + "."
