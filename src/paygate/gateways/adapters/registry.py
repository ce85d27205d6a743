"""Which adapter class serves which gateway type."""

from __future__ import annotations

from paygate.gateways.adapters.base import (
    AdapterConfig,
    GatewayAdapter,
    GatewayType,
    GatewayTypeSpec,
)
from paygate.gateways.adapters.custom import CustomGatewayAdapter
from paygate.gateways.adapters.paypal import PayPalAdapter
from paygate.gateways.adapters.sandbox import SandboxAdapter
from paygate.gateways.adapters.square import SquareAdapter
from paygate.gateways.adapters.stripe import StripeAdapter

ADAPTERS: dict[GatewayType, type[GatewayAdapter]] = {
    GatewayType.STRIPE: StripeAdapter,
    GatewayType.PAYPAL: PayPalAdapter,
    GatewayType.SQUARE: SquareAdapter,
    GatewayType.CUSTOM: CustomGatewayAdapter,
    GatewayType.SANDBOX: SandboxAdapter,
}


def spec_for(t: GatewayType) -> GatewayTypeSpec:
    return ADAPTERS[t].spec


def all_specs() -> list[GatewayTypeSpec]:
    """Every gateway type's spec, in the enum's order (the order forms list them in)."""
    return [ADAPTERS[t].spec for t in GatewayType]


def build_adapter(config: AdapterConfig) -> GatewayAdapter:
    """A fresh adapter for one call, from one company's decrypted configuration."""
    return ADAPTERS[config.gateway_type](config)
