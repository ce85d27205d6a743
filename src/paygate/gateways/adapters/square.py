"""Square, through the official SDK's `AsyncSquare` client."""

from __future__ import annotations

from typing import Any, ClassVar

from square import AsyncSquare
from square.core.api_error import ApiError

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayError,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayType,
    GatewayTypeSpec,
    GatewayUnavailable,
    call_gateway,
    http_client,
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


class SquareAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        location_id = self.config.value("location_id")

        async def send() -> ConnectionCheck:
            base = self.config.api_base_url(SPEC)
            # Our own httpx client so it is closed after the call and uses our timeout.
            async with http_client(self.config, base_url=base) as http:
                client = AsyncSquare(
                    token=self.config.value("access_token"),
                    base_url=base,
                    timeout=self.config.timeout_seconds,
                    httpx_client=http,
                )
                try:
                    # Retries are the payment layer's decision, not the SDK's.
                    response = await client.locations.list(request_options={"max_retries": 0})
                except ApiError as exc:
                    raise _map_api_error(exc) from None
            locations = response.locations or []
            found = next((loc for loc in locations if loc.id == location_id), None)
            if found is None:
                known = ", ".join(_describe(loc) for loc in locations) or "no locations"
                raise GatewayMisconfigured(
                    f"Location id {location_id} was not found in this Square account; "
                    f"it has: {known}."
                )
            if found.status is not None and found.status != "ACTIVE":
                raise GatewayMisconfigured(
                    f"Square location {_describe(found)} is {found.status}: "
                    "payments need an active location."
                )
            return ConnectionCheck(message=f"Connected to Square: location {_describe(found)}.")

        return await call_gateway(self.config, "test_connection", send)


def _describe(location: Any) -> str:
    name = getattr(location, "name", None)
    return f"{location.id} ({name})" if name else str(location.id)


def _error_code(exc: ApiError) -> str | None:
    # Square's error body: {"errors": [{"category", "code", "detail", "field"}]}.
    body = exc.body
    if isinstance(body, dict):
        errors = body.get("errors")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
            return code if isinstance(code, str) else None
    return None


def _map_api_error(exc: ApiError) -> GatewayError:
    status = exc.status_code or 0
    code = _error_code(exc)
    if status == 401:
        return GatewayMisconfigured("Square rejected the access token.", gateway_code=code)
    if status == 403:
        return GatewayMisconfigured(
            "Square refused access: the access token lacks the permission to read "
            "locations (MERCHANT_PROFILE_READ).",
            gateway_code=code,
        )
    if status == 429 or status >= 500:
        return GatewayUnavailable(f"Square answered with HTTP {status}.", gateway_code=code)
    if status == 404 or code is None:
        # No Square error body: something else answered at the configured base URL.
        return GatewayMisconfigured(
            f"The Square API base URL did not answer like Square (HTTP {status}).",
            gateway_code=code,
        )
    return GatewayRejected(f"Square refused the request (HTTP {status}).", gateway_code=code)
