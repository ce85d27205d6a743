"""Form fields to the API's Pydantic schemas, and a service's Problem back to inline errors.

No rules live here: the same schemas and services as the JSON API decide what is valid.
This module only translates between HTML form fields and those shapes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from starlette.datastructures import FormData

from paygate.gateways.adapters.base import GatewayTypeSpec
from paygate.gateways.models import Gateway
from paygate.gateways.schemas import GatewayCreate, GatewayUpdate
from paygate.kit.errors import FieldError, Problem, field_errors_from_pydantic, validation_failed

ModelT = TypeVar("ModelT", bound=BaseModel)

# Lists are reported per item ("supported_currencies.2"); the form has one input for them.
_LIST_FIELDS = ("supported_currencies", "payment_method_types")


@dataclass
class FormErrors:
    """Field errors keyed by form field name, plus what belongs to no field."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    general: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.fields or self.general)

    def get(self, name: str) -> list[str]:
        return self.fields.get(name, [])

    @classmethod
    def from_problem(
        cls,
        problem: Problem,
        known: Sequence[str],
        *,
        labels: Mapping[str, str] | None = None,
        values: Mapping[str, Sequence[str]] | None = None,
    ) -> FormErrors:
        """Put each field error next to its input; the rest (and non-field problems) on top."""
        errors = cls()
        labels = labels or {}
        for error in problem.errors:
            name, index = _form_field(error.field)
            message = error.message
            # Say which item of a list is wrong (currency codes are never secret).
            if index is not None and values and name in values:
                items = values[name]
                if index < len(items):
                    message = f"{items[index]} {message}" if message[:1].islower() else message
            if name in known:
                errors.fields.setdefault(name, []).append(_sentence(message, labels.get(name)))
            else:
                errors.general.append(_sentence(message, labels.get(name, error.field)))
        if not problem.errors:
            errors.general.append(problem.detail or problem.title)
        return errors


def _form_field(path: str) -> tuple[str, int | None]:
    for name in _LIST_FIELDS:
        match = re.fullmatch(rf"{name}\.(\d+)", path)
        if match:
            return name, int(match.group(1))
    return path, None


def _sentence(message: str, label: str | None) -> str:
    """Service messages are fragments ("is required"): make them read as sentences."""
    if message[:1].islower():
        message = f"{label} {message}" if label else message[:1].upper() + message[1:]
    return message if message.endswith((".", "!", "?")) else message + "."


def text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def texts(form: FormData, name: str) -> list[str]:
    return [v for v in form.getlist(name) if isinstance(v, str)]


def parse(model: type[ModelT], data: Mapping[str, Any]) -> ModelT:
    """Validate with the API's schema; a failure becomes the same Problem the API answers."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_failed(field_errors_from_pydantic(exc.errors())) from None


def _integer(raw: str) -> int | str | None:
    """Empty means "not set"; anything else is handed on for the schema to accept or refuse."""
    raw = raw.strip().replace(",", "").replace("_", "")
    if not raw:
        return None
    return int(raw) if re.fullmatch(r"-?\d{1,18}", raw) else raw


def split_list(raw: str) -> list[str]:
    return [item.strip().upper() for item in re.split(r"[,\s]+", raw) if item.strip()]


# --- gateways ---------------------------------------------------------------------------

GATEWAY_FIELDS = (
    "name",
    "public_label",
    "environment",
    "supported_currencies",
    "min_amount",
    "max_amount",
    "priority",
    "payment_method_types",
    "previous_secret_grace_hours",
)


def config_name(field_name: str) -> str:
    return f"configuration.{field_name}"


def gateway_known_fields(spec: GatewayTypeSpec) -> list[str]:
    return [*GATEWAY_FIELDS, *(config_name(f.name) for f in spec.fields)]


def gateway_labels(spec: GatewayTypeSpec) -> dict[str, str]:
    labels = {config_name(f.name): f.label for f in spec.fields}
    labels.update(
        name="Name",
        public_label="Label for customers",
        environment="Environment",
        supported_currencies="Currencies",
        min_amount="Minimum amount",
        max_amount="Maximum amount",
        priority="Priority",
        payment_method_types="Payment methods",
        previous_secret_grace_hours="Keep a replaced secret valid for",
        configuration="Configuration",
    )
    return labels


@dataclass
class GatewayFormValues:
    """What the form shows: typed values when re-rendered, stored ones when editing.

    Secret fields are never here: a secret is write-only, whatever was typed.
    """

    name: str = ""
    public_label: str = ""
    environment: str = "test"
    configuration: dict[str, str] = field(default_factory=dict)
    supported_currencies: str = "USD"
    min_amount: str = ""
    max_amount: str = ""
    priority: str = "100"
    payment_method_types: list[str] = field(default_factory=list)

    @classmethod
    def from_form(cls, form: FormData, spec: GatewayTypeSpec) -> GatewayFormValues:
        return cls(
            name=text(form, "name"),
            public_label=text(form, "public_label"),
            environment=text(form, "environment") or "test",
            configuration={
                f.name: text(form, config_name(f.name)) for f in spec.fields if not f.secret
            },
            supported_currencies=text(form, "supported_currencies"),
            min_amount=text(form, "min_amount"),
            max_amount=text(form, "max_amount"),
            priority=text(form, "priority"),
            payment_method_types=texts(form, "payment_method_types"),
        )

    @classmethod
    def for_new(cls, spec: GatewayTypeSpec) -> GatewayFormValues:
        return cls(name=spec.display_name, payment_method_types=list(spec.payment_method_types))

    @classmethod
    def from_gateway(cls, gateway: Gateway, spec: GatewayTypeSpec) -> GatewayFormValues:
        return cls(
            name=gateway.name,
            public_label=gateway.public_label or "",
            environment=gateway.environment,
            configuration={
                f.name: gateway.public_config.get(f.name, "") for f in spec.fields if not f.secret
            },
            supported_currencies=", ".join(gateway.supported_currencies),
            min_amount="" if gateway.min_amount is None else str(gateway.min_amount),
            max_amount="" if gateway.max_amount is None else str(gateway.max_amount),
            priority=str(gateway.priority),
            payment_method_types=list(gateway.payment_method_types),
        )


def _gateway_fields(form: FormData, spec: GatewayTypeSpec) -> dict[str, Any]:
    name = text(form, "name").strip()
    environment = text(form, "environment").strip()
    return {
        "name": name or None,
        # Always sent: an empty label clears it (customers then see the method and provider).
        "public_label": text(form, "public_label").strip(),
        "environment": environment or None,
        # Every field of the type is sent: an empty secret keeps the stored one, an empty
        # optional setting is cleared (the service's documented update rules).
        "configuration": {f.name: text(form, config_name(f.name)) for f in spec.fields},
        "supported_currencies": split_list(text(form, "supported_currencies")),
        "min_amount": _integer(text(form, "min_amount")),
        "max_amount": _integer(text(form, "max_amount")),
        "priority": _integer(text(form, "priority")),
        "payment_method_types": texts(form, "payment_method_types"),
    }


def gateway_create(form: FormData, spec: GatewayTypeSpec) -> GatewayCreate:
    return parse(GatewayCreate, {"gateway_type": spec.type, **_gateway_fields(form, spec)})


def gateway_update(form: FormData, spec: GatewayTypeSpec) -> GatewayUpdate:
    grace = _integer(text(form, "previous_secret_grace_hours"))
    return parse(
        GatewayUpdate, {**_gateway_fields(form, spec), "previous_secret_grace_hours": grace}
    )


def gateway_list_values(form: FormData) -> dict[str, list[str]]:
    """The list inputs as the service indexes them, to name the wrong item in a message."""
    return {
        "supported_currencies": split_list(text(form, "supported_currencies")),
        "payment_method_types": texts(form, "payment_method_types"),
    }


def field_error(name: str, message: str) -> Problem:
    return validation_failed([FieldError(name, message)])


def day_range(
    since: str, until: str, errors: FormErrors
) -> tuple[datetime | None, datetime | None]:
    """A list filter's "since" and "until" days (YYYY-MM-DD, UTC) as a half-open range:
    "until" a day includes that whole day. A bad date is a field error, and no bound."""

    def day(raw: str, name: str) -> date | None:
        if not raw:
            return None
        try:
            return date.fromisoformat(raw)
        except ValueError:
            errors.fields.setdefault(name, []).append("Enter a date as YYYY-MM-DD.")
            return None

    since_day, until_day = day(since, "since"), day(until, "until")
    return (
        datetime.combine(since_day, time(), tzinfo=UTC) if since_day else None,
        datetime.combine(until_day + timedelta(days=1), time(), tzinfo=UTC) if until_day else None,
    )
