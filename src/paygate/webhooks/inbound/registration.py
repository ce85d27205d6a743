"""A gateway's webhook setup (its URL, the events, the provider's steps) and "Register
with the provider": paygate creates the endpoint through the provider's API and stores
what it answers (Stripe's signing secret, Square's signature key, PayPal's webhook id)
through the gateway service, so a secret is encrypted like every credential and the one
it replaces stays accepted for the grace period."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from paygate.gateways.adapters.base_errors import GatewayError
from paygate.gateways.models import Gateway
from paygate.gateways.schemas import GatewayUpdate
from paygate.gateways.service import GatewayService
from paygate.kit.errors import Problem, not_found
from paygate.security import audit
from paygate.security.crypto import KeyringError
from paygate.webhooks.inbound.providers import provider_for
from paygate.webhooks.inbound.providers.base import Registration, SetupGuide
from paygate.webhooks.inbound.verification import webhook_url

logger = structlog.get_logger(__name__)


@dataclass(frozen=True)
class WebhookSetup:
    gateway: Gateway
    url: str
    guide: SetupGuide
    # Whether the setting verification needs is filled in (a secret's hint, or the id).
    configured: bool


def registration_refused(detail: str) -> Problem:
    return Problem(409, "webhook-registration-failed", "Registration failed", detail)


class WebhookRegistration:
    def __init__(self, gateways: GatewayService) -> None:
        self.gateways = gateways

    def setup_of(self, gateway: Gateway) -> WebhookSetup | None:
        """None for a gateway type that sends no webhooks (the sandbox)."""
        provider = provider_for(gateway.gateway_type)
        if provider is None:
            return None
        field = provider.secret_field
        configured = bool(
            (gateway.secret_hints or {}).get(field) or (gateway.public_config or {}).get(field)
        )
        return WebhookSetup(
            gateway, webhook_url(self.gateways.settings, gateway.id), provider.setup, configured
        )

    async def setup(self, gateway_id: str) -> WebhookSetup:
        setup = self.setup_of(await self.gateways.get(gateway_id))
        if setup is None:
            raise not_found("gateway that sends webhooks")
        return setup

    async def register(self, gateway_id: str) -> tuple[WebhookSetup, Registration]:
        setup = await self.setup(gateway_id)
        provider = provider_for(setup.gateway.gateway_type)
        assert provider is not None
        if not setup.guide.can_register:
            raise registration_refused(
                "This gateway type has no API to register webhooks: follow its setup steps."
            )
        try:
            config = self.gateways.adapter_config(setup.gateway)
        except KeyringError:
            raise registration_refused(
                "The gateway's credentials cannot be decrypted: re-enter them first."
            ) from None
        try:
            registration = await provider.register(config, setup.url)
        except GatewayError as exc:
            raise registration_refused(
                f"The provider refused to create the webhook endpoint: {exc.message}"
            ) from None
        await self.gateways.update(
            gateway_id, GatewayUpdate(configuration=registration.configuration)
        )
        await audit.record_by(
            self.gateways.session,
            self.gateways.auth,
            action="gateway.webhook_registered",
            object_type="gateway",
            object_id=gateway_id,
            detail=(
                f"Webhook endpoint {registration.endpoint_id} created at the provider for "
                f"{setup.url} ({len(registration.events)} event types); stored: "
                f"{', '.join(sorted(registration.configuration))}."
            ),
        )
        logger.info(
            "webhook_registered", gateway_id=gateway_id, endpoint_id=registration.endpoint_id
        )
        return await self.setup(gateway_id), registration
