"""What a company configures for a Stripe gateway: the fields, their help, and where
Stripe's API lives.
"""

from __future__ import annotations

from paygate.gateways.adapters.base import (
    Environment,
    FieldKind,
    FieldSpec,
    GatewayType,
    GatewayTypeSpec,
)

STRIPE_API_BASE_URL = "https://api.stripe.com"

# How the payment page takes a card for this gateway (read by the payment page).
PAYMENT_PAGE_FLOWS = ("elements", "checkout")


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
            name="payment_page_flow",
            label="Payment page",
            kind=FieldKind.CHOICE,
            required=False,
            choices=PAYMENT_PAGE_FLOWS,
            help=(
                "elements (the default): the customer types the card on paygate's payment "
                "page, in Stripe.js fields. checkout: the customer is sent to a Stripe "
                "Checkout page hosted by Stripe and comes back to paygate."
            ),
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
