"""What a company configures for a PayPal gateway: the REST app's credentials, their
help, and where PayPal's API lives.
"""

from __future__ import annotations

from paygate.gateways.adapters.base import (
    Environment,
    FieldKind,
    FieldSpec,
    GatewayType,
    GatewayTypeSpec,
)

SPEC = GatewayTypeSpec(
    type=GatewayType.PAYPAL,
    display_name="PayPal",
    description="PayPal checkout through a PayPal REST API app.",
    payment_method_types=("paypal",),
    fields=(
        FieldSpec(
            name="client_id",
            label="Client ID",
            help=(
                "In the PayPal Developer Dashboard, open Apps & Credentials, pick Sandbox or "
                "Live to match this gateway's environment, open your REST API app and copy "
                "its Client ID."
            ),
        ),
        FieldSpec(
            name="client_secret",
            label="Client secret",
            kind=FieldKind.SECRET,
            help="On the same app page, under Secret key: the app's client secret.",
        ),
        FieldSpec(
            name="webhook_id",
            label="Webhook ID",
            required=False,
            help=(
                "On the app page, under Webhooks, copy the Webhook ID PayPal lists for the "
                "webhook that points at paygate. Optional: needed only to verify webhooks."
            ),
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://api-m.sandbox.paypal.com (test) or "
                "https://api-m.paypal.com (live)."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: "https://api-m.sandbox.paypal.com",
        Environment.LIVE: "https://api-m.paypal.com",
    },
)
