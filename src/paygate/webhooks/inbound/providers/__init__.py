"""One module per gateway type that sends webhooks; `provider_for` picks it."""

from __future__ import annotations

from paygate.gateways.adapters.base import GatewayType
from paygate.webhooks.inbound.providers.base import Provider
from paygate.webhooks.inbound.providers.custom import CustomWebhooks
from paygate.webhooks.inbound.providers.paypal import PayPalWebhooks
from paygate.webhooks.inbound.providers.square import SquareWebhooks
from paygate.webhooks.inbound.providers.stripe import StripeWebhooks

_PROVIDERS: dict[GatewayType, Provider] = {
    GatewayType.STRIPE: StripeWebhooks(),
    GatewayType.PAYPAL: PayPalWebhooks(),
    GatewayType.SQUARE: SquareWebhooks(),
    GatewayType.CUSTOM: CustomWebhooks(),
}


def provider_for(gateway_type: str) -> Provider | None:
    """The gateway type's webhook provider; None for types that send none (the sandbox)."""
    try:
        return _PROVIDERS.get(GatewayType(gateway_type))
    except ValueError:
        return None
