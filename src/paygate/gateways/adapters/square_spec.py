"""What a company configures for a Square gateway: the access token, the location, their
help, and where Square's API lives.
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
    type=GatewayType.SQUARE,
    display_name="Square",
    description="Card payments through your Square seller account.",
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="access_token",
            label="Access token",
            kind=FieldKind.SECRET,
            help=(
                "In the Square Developer Console, open your application, choose Sandbox or "
                "Production to match this gateway's environment, and copy the access token "
                "on the Credentials page."
            ),
        ),
        FieldSpec(
            name="application_id",
            label="Application ID",
            help=(
                "On the same Credentials page: the application ID (sandbox-sq0idb-... in "
                "Sandbox, sq0idp-... in Production). The payment page uses it in the browser."
            ),
            prefixes={
                Environment.TEST: ("sandbox-sq0idb-",),
                Environment.LIVE: ("sq0idp-",),
            },
        ),
        FieldSpec(
            name="location_id",
            label="Location ID",
            help=(
                "In the Developer Console's Locations page (or Square Dashboard > Account & "
                "Settings > Locations): the ID of the location payments are taken for."
            ),
        ),
        FieldSpec(
            name="webhook_signature_key",
            label="Webhook signature key",
            kind=FieldKind.SECRET,
            required=False,
            help=(
                "In the Developer Console, open Webhooks > Subscriptions, open the subscription "
                "that points at paygate and copy its signature key. Optional: needed only to "
                "verify webhooks."
            ),
        ),
        FieldSpec(
            name="api_base_url",
            label="API base URL",
            kind=FieldKind.URL,
            required=False,
            help=(
                "Leave empty to use https://connect.squareupsandbox.com (test) or "
                "https://connect.squareup.com (live)."
            ),
        ),
    ),
    default_api_base_url={
        Environment.TEST: "https://connect.squareupsandbox.com",
        Environment.LIVE: "https://connect.squareup.com",
    },
)
