"""Stripe, through the official SDK's `StripeClient` and its async methods over httpx."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import httpx
import stripe

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayTimeout,
    GatewayType,
    GatewayTypeSpec,
    GatewayUnavailable,
    call_gateway,
)

STRIPE_API_BASE_URL = "https://api.stripe.com"

SPEC = GatewayTypeSpec(
    type=GatewayType.STRIPE,
    display_name="Stripe",
    description="Card payments through your Stripe account.",
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="secret_key",
            label="Secret key",
            kind=FieldKind.SECRET,
            help=(
                "In the Stripe Dashboard, open Developers > API keys and reveal the secret key "
                "(sk_test_... in test mode, sk_live_... in live mode). A restricted key "
                "(rk_...) works too if it may read the balance and write PaymentIntents "
                "and refunds."
            ),
            prefixes={
                Environment.TEST: ("sk_test_", "rk_test_"),
                Environment.LIVE: ("sk_live_", "rk_live_"),
            },
        ),
        FieldSpec(
            name="publishable_key",
            label="Publishable key",
            help=(
                "On the same Developers > API keys page: the publishable key "
                "(pk_test_... or pk_live_...). The payment page uses it in the browser."
            ),
            prefixes={Environment.TEST: ("pk_test_",), Environment.LIVE: ("pk_live_",)},
        ),
        FieldSpec(
            name="webhook_secret",
            label="Webhook signing secret",
            kind=FieldKind.SECRET,
            # Optional until paygate receives this gateway's webhooks (a later release).
            required=False,
            help=(
                "In Developers > Webhooks, open the endpoint that points at paygate and reveal "
                "its signing secret (whsec_...). Optional: needed only to verify webhooks."
            ),
            prefixes={Environment.TEST: ("whsec_",), Environment.LIVE: ("whsec_",)},
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://api.stripe.com. Set it only to go through a "
                "proxy or a Stripe emulator."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: STRIPE_API_BASE_URL,
        Environment.LIVE: STRIPE_API_BASE_URL,
    },
)


class StripeAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        async def send() -> ConnectionCheck:
            http = stripe.HTTPXClient(timeout=self.config.timeout_seconds)
            try:
                # One client per call: the key belongs to one company (never stripe.api_key).
                client = stripe.StripeClient(
                    self.config.value("secret_key"),
                    base_addresses={"api": self.config.api_base_url(SPEC)},
                    http_client=http,
                    # Retries are the payment layer's decision, not the SDK's.
                    max_network_retries=0,
                )
                balance = await client.v1.balance.retrieve_async()
            except stripe.StripeError as exc:
                raise _map_stripe_error(exc, self.config) from None
            finally:
                # Untyped in the SDK; closes the httpx client the SDK opened for this call.
                await http.close_async()  # type: ignore[no-untyped-call]
            currencies = _currencies(balance.available)
            if not currencies:
                return ConnectionCheck(message="Connected to Stripe: the balance is empty.")
            return ConnectionCheck(
                message=f"Connected to Stripe: balance available in {', '.join(currencies)}."
            )

        return await call_gateway(self.config, "test_connection", send)


def _currencies(available: Any) -> list[str]:
    """Currencies of the balance's `available` funds (a list in Stripe, a dict in localstripe)."""
    entries: Iterable[Any]
    if isinstance(available, list):
        entries = available
    elif available is None:
        entries = ()
    else:
        entries = (available,)
    found: list[str] = []
    for entry in entries:
        # StripeObject exposes keys as attributes (it is not a dict in stripe >= 13).
        currency = (
            entry.get("currency") if isinstance(entry, dict) else getattr(entry, "currency", None)
        )
        if isinstance(currency, str) and currency.upper() not in found:
            found.append(currency.upper())
    return found


def _map_stripe_error(exc: stripe.StripeError, config: AdapterConfig) -> GatewayError:
    """Turn an SDK error into the taxonomy. Stripe's own message is not reused: it may
    echo part of the key."""
    status = exc.http_status
    code = exc.code
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        return GatewayMisconfigured(
            f"Stripe rejected the secret key (HTTP {status}): check that it is the "
            f"{config.environment.value} mode secret key of the right account and that it "
            "has not been rolled.",
            gateway_code=code,
        )
    if isinstance(exc, stripe.APIConnectionError):
        # The SDK wraps the httpx error; its type tells a timeout from a refused connection.
        cause = exc.__cause__
        if isinstance(cause, httpx.TimeoutException):
            sent = not isinstance(cause, httpx.ConnectTimeout | httpx.PoolTimeout)
            return GatewayTimeout(
                f"Stripe did not answer within {config.timeout_seconds:g} s.",
                request_sent=sent,
            )
        return GatewayUnavailable("Stripe could not be reached (connection failed).")
    if isinstance(exc, stripe.RateLimitError):
        return GatewayUnavailable("Stripe is rate limiting requests (HTTP 429).", gateway_code=code)
    if status is None or status >= 500:
        return GatewayUnavailable(
            f"Stripe answered with a server error (HTTP {status}).", gateway_code=code
        )
    if status == 404:
        return GatewayMisconfigured(
            "Stripe answered 404 for the balance: check the API base URL.", gateway_code=code
        )
    return GatewayRejected(f"Stripe refused the request (HTTP {status}).", gateway_code=code)
