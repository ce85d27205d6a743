"""A gateway configuration checked against its type's field specs before it is stored:
field values (prefixes per environment, URLs that must not point at private addresses),
commercial terms (currencies, amounts, payment methods), and how a stored secret is shown
masked. Pure checks: nothing here reads or writes the database."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from paygate.gateways.adapters.base import Environment, FieldKind, FieldSpec, GatewayTypeSpec
from paygate.gateways.models import Gateway
from paygate.kit.errors import FieldError, validation_failed
from paygate.kit.money import is_currency
from paygate.security.ssrf import Resolver, UnsafeURL, check_outbound_url, check_url_shape

MASK_GAP = "..."
DEFAULT_CURRENCIES = ["USD"]


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


def unique_currencies(codes: list[str]) -> list[str]:
    """Upper-cased, each once, in the order given."""
    return list(dict.fromkeys(code.upper() for code in codes))


def check_commercial_terms(spec: GatewayTypeSpec, gateway: Gateway) -> None:
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
