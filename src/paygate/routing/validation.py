"""What the schemas cannot check of a rule: codes that exist, the company's own gateways,
each gateway once, split shares of 100 %."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from paygate.kit.countries import is_country
from paygate.kit.errors import FieldError, validation_failed
from paygate.kit.money import is_currency
from paygate.routing.schemas import Conditions


def action_gateway_ids(action: dict[str, Any]) -> list[str]:
    if action["type"] == "split":
        return [share["gateway_id"] for share in action["split"]]
    return list(action["gateway_ids"])


def check_rule(
    conditions: Conditions, action: dict[str, Any], gateway_ids: set[str], prefix: str = ""
) -> None:
    """What the schema cannot know: codes that exist, your own gateways, shares of 100 %."""
    errors: list[FieldError] = []
    for index, code in enumerate(conditions.currencies):
        if not is_currency(code):
            errors.append(
                FieldError(
                    f"{prefix}conditions.currencies.{index}",
                    "is not an ISO 4217 currency code",
                    "unsupported_currency",
                )
            )
    for index, code in enumerate(conditions.customer_countries):
        if not is_country(code):
            errors.append(
                FieldError(
                    f"{prefix}conditions.customer_countries.{index}",
                    "is not an ISO 3166 country code",
                    "unknown_country",
                )
            )
    if (
        conditions.amount_min is not None
        and conditions.amount_max is not None
        and conditions.amount_min > conditions.amount_max
    ):
        errors.append(
            FieldError(f"{prefix}conditions.amount_min", "must not exceed amount_max", "invalid")
        )
    ids = action_gateway_ids(action)
    where = "split" if action["type"] == "split" else "gateway_ids"
    for index, gateway_id in enumerate(ids):
        path = f"{prefix}action.{where}.{index}" + (".gateway_id" if where == "split" else "")
        if gateway_id not in gateway_ids:
            errors.append(FieldError(path, "is not one of your gateways", "unknown_gateway"))
        elif gateway_id in ids[:index]:
            errors.append(FieldError(path, "is listed twice", "duplicate"))
    if action["type"] == "split":
        total = sum(share["percent"] for share in action["split"])
        if total != 100:
            errors.append(
                FieldError(
                    f"{prefix}action.split",
                    f"The shares must add up to 100 (they add up to {total})",
                )
            )
    if errors:
        raise validation_failed(errors)


def check_default(default: Sequence[str], gateway_ids: set[str], field: str) -> None:
    errors = []
    for index, gateway_id in enumerate(default):
        if gateway_id not in gateway_ids:
            errors.append(
                FieldError(f"{field}.{index}", "is not one of your gateways", "unknown_gateway")
            )
        elif gateway_id in default[:index]:
            errors.append(FieldError(f"{field}.{index}", "is listed twice", "duplicate"))
    if errors:
        raise validation_failed(errors)
