"""Whether a gateway can take a payment: the one definition routing and the API share."""

from __future__ import annotations

from enum import StrEnum

from paygate.gateways.models import Gateway


class Unfit(StrEnum):
    """Why a gateway cannot take a payment (routing shows it as the reason it was skipped)."""

    DISABLED = "disabled"
    CURRENCY = "currency"
    AMOUNT = "amount"
    METHOD = "method"


def unfit(
    gateway: Gateway, currency: str, amount: int, method_type: str
) -> tuple[Unfit, str] | None:
    """None when `gateway` takes this payment; else why not, in plain words."""
    if not gateway.enabled:
        return Unfit.DISABLED, "the gateway is disabled"
    if currency not in gateway.supported_currencies:
        return Unfit.CURRENCY, f"does not take {currency}"
    if gateway.min_amount is not None and amount < gateway.min_amount:
        return Unfit.AMOUNT, f"takes {gateway.min_amount} minor units at least"
    if gateway.max_amount is not None and amount > gateway.max_amount:
        return Unfit.AMOUNT, f"takes {gateway.max_amount} minor units at most"
    if method_type not in gateway.payment_method_types:
        return Unfit.METHOD, f"does not take {method_type} payments"
    return None
