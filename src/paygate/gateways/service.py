"""Gateway configurations: validate, encrypt, mask, toggle, test, delete, and re-wrap keys."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.db import Database
from paygate.gateways.adapters.base import (
    AdapterConfig,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayError,
    GatewayType,
    GatewayTypeSpec,
)
from paygate.gateways.adapters.registry import build_adapter, spec_for
from paygate.gateways.credentials import (
    Envelope,
    accepted_previous_until,
    grace_end,
    next_expiry,
    open_envelope,
)
from paygate.gateways.models import Gateway
from paygate.gateways.repository import (
    GatewayRepository,
    count_by_key_id,
    lock_batch_not_under,
    lock_batch_with_expired_previous,
)
from paygate.gateways.schemas import GatewayCreate, GatewayFields, GatewayUpdate
from paygate.gateways.versions import history_of, record_version, secret_paths, summary_of
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, Problem, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.money import is_currency
from paygate.security import audit
from paygate.security.crypto import Keyring, KeyringError, SealedSecrets
from paygate.security.history import ConfigVersion
from paygate.security.ssrf import (
    Resolver,
    UnsafeURL,
    check_outbound_url,
    check_url_shape,
    resolve_host,
)
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

MASK_GAP = "..."
UNDECRYPTABLE = (
    "The stored credentials cannot be decrypted with the configured master keys. "
    "Restore the missing key, or edit the gateway and enter its secrets again."
)
DEFAULT_CURRENCIES = ["USD"]
CREDENTIALS_UNREADABLE = "gateway-credentials-unreadable"


def mask(value: str, spec: FieldSpec) -> str:
    """The known prefix plus the last 4 characters; short secrets show no tail at all."""
    prefix = next((p for p in spec.known_prefixes() if value.startswith(p)), "")
    rest = value[len(prefix) :]
    tail = rest[-4:] if len(rest) >= 12 else ""
    return f"{prefix}{MASK_GAP}{tail}"


def _url_problem(value: str, environment: Environment) -> str | None:
    try:
        check_url_shape(value, live=environment is Environment.LIVE)
    except UnsafeURL as exc:
        return exc.reason
    return None


async def check_outbound_addresses(
    spec: GatewayTypeSpec,
    environment: Environment,
    public: Mapping[str, str],
    resolver: Resolver,
    *,
    private_test_allowed: bool,
) -> None:
    """A gateway's URL fields must point at public addresses (SSRF, security/ssrf.py).

    Test gateways may point anywhere only where the settings allow it (development and
    test mode: the local emulators on 127.0.0.1); live gateways never.
    """
    if environment is not Environment.LIVE and private_test_allowed:
        return
    live = environment is Environment.LIVE
    errors: list[FieldError] = []
    for field in spec.fields:
        value = public.get(field.name)
        if field.kind is not FieldKind.URL or not value:
            continue
        try:
            await check_outbound_url(value, live=True, resolver=resolver, https_only=live)
        except UnsafeURL as exc:
            errors.append(FieldError(f"configuration.{field.name}", exc.reason, "unsafe_url"))
    if errors:
        raise validation_failed(errors)


@dataclass
class CheckedConfiguration:
    public: dict[str, str]
    secrets: dict[str, str]
    changed_secrets: set[str]


def check_configuration(
    spec: GatewayTypeSpec,
    environment: Environment,
    given: Mapping[str, str],
    *,
    stored_public: Mapping[str, str] | None = None,
    stored_secrets: Mapping[str, str] | None = None,
) -> CheckedConfiguration:
    """Validate a configuration against its type's field specs; field errors name the field.

    On update, a secret left out or sent empty keeps its stored value; other fields left
    out keep theirs, and an empty optional field is cleared.
    """
    errors: list[FieldError] = []
    for name in given:
        if spec.field(name) is None:
            errors.append(
                FieldError(
                    f"configuration.{name}",
                    f"is not a {spec.display_name} setting",
                    "unknown_field",
                )
            )
    public: dict[str, str] = {}
    secrets: dict[str, str] = {}
    changed: set[str] = set()
    for field in spec.fields:
        path = f"configuration.{field.name}"
        raw = given.get(field.name)
        value = raw.strip() if raw is not None else None
        stored = (stored_secrets if field.secret else stored_public) or {}
        if not value:
            # Absent: keep what is stored. Empty: keep a secret, clear anything else.
            value = stored.get(field.name, "") if field.secret or value is None else ""
        elif field.secret and value != stored.get(field.name):
            changed.add(field.name)
        if not value:
            if field.required:
                errors.append(FieldError(path, "is required", "missing"))
            continue
        problem = _value_problem(field, value, environment)
        if problem:
            errors.append(FieldError(path, problem, "invalid"))
            continue
        (secrets if field.secret else public)[field.name] = value
    if errors:
        raise validation_failed(errors)
    return CheckedConfiguration(public, secrets, changed)


def _value_problem(field: FieldSpec, value: str, environment: Environment) -> str | None:
    # Never echo the value: it may be a secret.
    if len(value) > field.max_length:
        return f"must be at most {field.max_length} characters"
    if any(c.isspace() for c in value):
        return "must not contain spaces"
    if field.kind is FieldKind.URL:
        return _url_problem(value, environment)
    if field.kind is FieldKind.CHOICE and value not in field.choices:
        return f"must be one of: {', '.join(field.choices)}"
    allowed = field.prefixes.get(environment)
    if allowed and not value.startswith(allowed):
        other = [
            p for env, group in field.prefixes.items() if env is not environment for p in group
        ]
        if any(value.startswith(p) for p in other):
            needed = " or ".join(allowed)
            return f"is for the other environment: a {environment.value} gateway needs {needed}"
        return f"must start with {' or '.join(allowed)}"
    if field.pattern and not re.fullmatch(field.pattern, value):
        return "has the wrong format"
    return None


def _currencies(codes: list[str]) -> list[str]:
    """Upper-cased, each once, in the order given."""
    return list(dict.fromkeys(code.upper() for code in codes))


def _check_commercial_terms(spec: GatewayTypeSpec, gateway: Gateway) -> None:
    errors: list[FieldError] = []
    for index, code in enumerate(gateway.supported_currencies):
        if not is_currency(code):
            errors.append(
                FieldError(
                    f"supported_currencies.{index}",
                    "is not an ISO 4217 currency code",
                    "unsupported_currency",
                )
            )
    if not gateway.supported_currencies:
        errors.append(FieldError("supported_currencies", "needs at least one currency", "missing"))
    if (
        gateway.min_amount is not None
        and gateway.max_amount is not None
        and gateway.min_amount > gateway.max_amount
    ):
        errors.append(FieldError("min_amount", "must not exceed max_amount", "invalid"))
    for index, method in enumerate(gateway.payment_method_types):
        if method not in spec.payment_method_types:
            errors.append(
                FieldError(
                    f"payment_method_types.{index}",
                    f"{spec.display_name} offers {', '.join(spec.payment_method_types)}",
                    "unsupported_method",
                )
            )
    if not gateway.payment_method_types:
        errors.append(
            FieldError("payment_method_types", "needs at least one payment method type", "missing")
        )
    if errors:
        raise validation_failed(errors)


def secrets_of(gateway: Gateway, keyring: Keyring) -> dict[str, str]:
    """A gateway's decrypted current secrets, for one call; raises KeyringError loudly."""
    return envelope_of(gateway, keyring).current


def envelope_of(gateway: Gateway, keyring: Keyring) -> Envelope:
    """Current and previous secrets; raises KeyringError loudly."""
    try:
        return open_envelope(gateway, keyring)
    except KeyringError as exc:
        # Loud, never silent: the operator must restore the key or the admin re-enter secrets.
        logger.error(
            "gateway_secrets_undecryptable",
            gateway_id=gateway.id,
            key_id=gateway.key_id,
            reason=str(exc),
        )
        raise


def adapter_config(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> AdapterConfig:
    """What an adapter is built from: the gateway's settings and decrypted secrets."""
    return AdapterConfig(
        gateway_type=GatewayType(gateway.gateway_type),
        environment=Environment(gateway.environment),
        values={**gateway.public_config, **secrets_of(gateway, keyring)},
        timeout_seconds=settings.gateway_timeout_seconds,
        public_base_url=settings.base_url,
        resolver=resolver,
        guard_outbound=(
            gateway.environment == Environment.LIVE.value
            or not settings.private_addresses_for_test_gateways
        ),
    )


def payable_config(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> AdapterConfig:
    """`adapter_config` for the payment paths: unreadable secrets are a clear 409 problem.

    Raised before anything is written or sent, so the caller's transaction rolls back, the
    idempotency key is freed, and a retry after the fix goes through. Never skipped: the
    caller asked for this gateway (or routing chose it) and must learn why it cannot be used.
    """
    try:
        return adapter_config(gateway, keyring, settings, resolver)
    except KeyringError:
        raise Problem(
            409,
            CREDENTIALS_UNREADABLE,
            "Gateway credentials unreadable",
            f"The stored credentials of gateway {gateway.id} cannot be decrypted with the "
            "configured master keys: nothing was sent to the gateway. Restore the missing "
            "master key, or edit the gateway and enter its secrets again.",
        ) from None


@dataclass(frozen=True)
class ConnectionResult:
    ok: bool
    message: str
    latency_ms: int
    # Why it failed, as the error taxonomy names it ("unavailable", "timeout",
    # "misconfigured", ..., or "credentials_unreadable"); None when it worked.
    error_code: str | None = None


async def probe_connection(
    gateway: Gateway, keyring: Keyring, settings: Settings, resolver: Resolver = resolve_host
) -> ConnectionResult:
    """The real call "Test connection" makes; scheduled health checks make the same one.

    Never raises for a gateway problem: the answer says what went wrong, in words that
    hold no secret (the adapters' messages never do).
    """
    started = time.perf_counter()
    code: str | None = None
    try:
        adapter = build_adapter(adapter_config(gateway, keyring, settings, resolver))
        # The adapter's own timeout applies per call; this bounds the whole check.
        async with asyncio.timeout(settings.gateway_timeout_seconds * 2 + 1):
            check = await adapter.test_connection()
        ok, message = True, check.message
    except GatewayError as exc:
        ok, message, code = False, exc.message, exc.code
    except KeyringError:
        ok, message, code = False, UNDECRYPTABLE, "credentials_unreadable"
    except TimeoutError:
        ok, message = False, f"Timed out after {settings.gateway_timeout_seconds:g} s."
        code = "timeout"
    latency_ms = round((time.perf_counter() - started) * 1000)
    return ConnectionResult(ok, message, latency_ms, code)


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
            supported_currencies=_currencies(request.supported_currencies or DEFAULT_CURRENCIES),
            min_amount=request.min_amount,
            max_amount=request.max_amount,
            priority=100 if request.priority is None else request.priority,
            payment_method_types=list(request.payment_method_types or spec.payment_method_types),
            secret_hints={},
        )
        _check_commercial_terms(spec, gateway)
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
        _check_commercial_terms(spec, gateway)
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
            gateway.supported_currencies = _currencies(request.supported_currencies)
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
        action = "gateway.enabled" if enabled else "gateway.disabled"
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
            f"gateway.{outcome}", gateway, detail=version.detail() if version else None
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

    async def audit_entry(self, action: str, gateway: Gateway, **fields: Any) -> None:
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


async def wipe_expired_previous_credentials(
    database: Database, keyring: Keyring, *, now: datetime | None = None, batch_size: int = 100
) -> int:
    """Wipe every previous secret whose grace has ended; returns how many gateways changed.

    One small transaction per batch; a gateway that cannot be decrypted is reported (error
    log) and left alone: its current secrets must not be lost along with the old one.
    """
    moment = now or utcnow()
    unreadable: set[str] = set()
    wiped = 0
    while True:
        async with database.transaction() as session:
            batch = await lock_batch_with_expired_previous(
                session, moment, batch_size, exclude=unreadable
            )
            for gateway in batch:
                try:
                    envelope = envelope_of(gateway, keyring)
                except KeyringError:
                    unreadable.add(gateway.id)
                    continue
                _wipe_expired(gateway, envelope, keyring, moment)
                wiped += 1
                await audit.record(
                    session,
                    company_id=gateway.company_id,
                    actor=audit.SYSTEM,
                    origin=None,
                    action="gateway.previous_credentials_wiped",
                    object_type="gateway",
                    object_id=gateway.id,
                    object_name=gateway.name,
                    detail="The grace period of a replaced secret ended; it was wiped.",
                )
        if len(batch) < batch_size:
            return wiped


def _wipe_expired(gateway: Gateway, envelope: Envelope, keyring: Keyring, now: datetime) -> None:
    hints = {name: dict(hint) for name, hint in (gateway.secret_hints or {}).items()}
    kept: dict[str, str] = {}
    for name, hint in hints.items():
        if name in envelope.previous and accepted_previous_until(gateway, name, now):
            kept[name] = envelope.previous[name]
        else:
            hint.pop("previous_valid_until", None)
    sealed = keyring.seal(Envelope(envelope.current, kept).plaintext(), gateway.aad())
    gateway.key_id = sealed.key_id
    gateway.wrapped_data_key = sealed.wrapped_data_key
    gateway.secret_ciphertext = sealed.ciphertext
    gateway.secret_hints = hints
    gateway.previous_credentials_expire_at = next_expiry(hints)


@dataclass(frozen=True)
class RotationProgress:
    rewrapped: int
    # Still under another key and not failed (busy rows another transaction held).
    remaining: int
    # Configurations that could not be re-wrapped, so far (their ids only).
    failed_ids: tuple[str, ...] = ()


async def rewrap_all(
    database: Database,
    keyring: Keyring,
    *,
    company_id: str | None = None,
    actor: audit.Actor = audit.SYSTEM,
    batch_size: int = 100,
) -> AsyncIterator[RotationProgress]:
    """Re-wrap every data key under the primary master key, one small transaction per batch.

    `company_id` limits it to one company (the owner's job); None is every company (the
    operator's CLI). Rows are locked only while their batch is re-wrapped, so paygate keeps
    serving. A data key that cannot be unwrapped is never skipped silently: it is logged
    at error level, audited for its company, and reported in `failed_ids`.
    """
    done = 0
    failed: list[str] = []
    while True:
        async with database.transaction() as session:
            batch = await lock_batch_not_under(
                session, keyring.primary_key_id, batch_size, company_id=company_id, exclude=failed
            )
            for gateway in batch:
                try:
                    keyring.rewrap_row(gateway)
                except KeyringError as exc:
                    failed.append(gateway.id)
                    await _report_unwrap_failure(session, gateway, keyring, actor, str(exc))
                    continue
                done += 1
            counts = await count_by_key_id(session, company_id)
        under_other = sum(n for key_id, n in counts.items() if key_id != keyring.primary_key_id)
        yield RotationProgress(done, under_other - len(failed), tuple(failed))
        if not batch:
            return


async def _report_unwrap_failure(
    session: AsyncSession, gateway: Gateway, keyring: Keyring, actor: audit.Actor, reason: str
) -> None:
    logger.error(
        "key_rotation_unwrap_failed",
        gateway_id=gateway.id,
        company_id=gateway.company_id,
        key_id=gateway.key_id,
        target_key_id=keyring.primary_key_id,
        reason=reason,
    )
    await audit.record(
        session,
        company_id=gateway.company_id,
        actor=actor,
        origin=None,
        action="gateway.credentials_undecryptable",
        object_type="gateway",
        object_id=gateway.id,
        object_name=gateway.name,
        outcome="failure",
        detail=(
            f"Re-wrapping under master key {keyring.primary_key_id} failed: {reason}. "
            f"Restore master key {gateway.key_id} or re-enter the gateway's credentials."
        ),
    )
