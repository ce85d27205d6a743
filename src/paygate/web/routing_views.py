"""How the routing pages put rules into words."""

from __future__ import annotations

from typing import Any

from paygate.gateways.models import Gateway


def names_of(gateways: list[Gateway]) -> dict[str, str]:
    return {g.id: g.name for g in gateways}


def describe_conditions(conditions: dict[str, Any]) -> list[str]:
    """A rule's conditions in words, one per condition ("Every payment" when none)."""
    words = []
    if conditions.get("currencies"):
        words.append("Currency " + " or ".join(conditions["currencies"]))
    low, high = conditions.get("amount_min"), conditions.get("amount_max")
    if low is not None and high is not None:
        words.append(f"Amount {low:,} to {high:,} (minor units)")
    elif low is not None:
        words.append(f"Amount at least {low:,} (minor units)")
    elif high is not None:
        words.append(f"Amount at most {high:,} (minor units)")
    if conditions.get("payment_method_types"):
        words.append("Method " + " or ".join(conditions["payment_method_types"]))
    if conditions.get("card_brands"):
        words.append("Card " + " or ".join(conditions["card_brands"]))
    if conditions.get("customer_countries"):
        words.append("Customer in " + ", ".join(conditions["customer_countries"]))
    for key, value in (conditions.get("metadata") or {}).items():
        words.append(f"Metadata {key} = {value}")
    return words or ["Every payment"]


def describe_action(action: dict[str, Any], names: dict[str, str]) -> str:
    def name(gateway_id: str) -> str:
        return names.get(gateway_id, f"{gateway_id} (deleted)")

    if action["type"] == "split":
        shares = " · ".join(f"{name(s['gateway_id'])} {s['percent']}%" for s in action["split"])
        return f"Split: {shares}"
    listed = " → ".join(name(g) for g in action["gateway_ids"])
    if action["type"] == "success_rate":
        return (
            f"Best recent success rate first among {listed} "
            f"({action.get('exploration_percent', 10)}% exploring)"
        )
    return f"In order: {listed}"
