"""PayPal, over its documented REST API with httpx (the official SDK is synchronous)."""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from paygate.gateways.adapters.base import (
    AdapterConfig,
    ConnectionCheck,
    Environment,
    FieldKind,
    FieldSpec,
    GatewayMisconfigured,
    GatewayRejected,
    GatewayType,
    GatewayTypeSpec,
    GatewayUnavailable,
    call_gateway,
    http_client,
)

TOKEN_PATH = "/v1/oauth2/token"

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


class PayPalAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    async def test_connection(self) -> ConnectionCheck:
        async def send() -> ConnectionCheck:
            token = await self._fetch_token()
            expires_in = token.get("expires_in")
            lifetime = f" (expires in {expires_in} s)" if isinstance(expires_in, int) else ""
            return ConnectionCheck(message=f"Connected to PayPal: OAuth token obtained{lifetime}.")

        return await call_gateway(self.config, "test_connection", send)

    async def _fetch_token(self) -> dict[str, Any]:
        """Exchange the client id and secret for an access token (client credentials grant)."""
        base = self.config.api_base_url(SPEC)
        async with http_client(self.config, base_url=base) as client:
            response = await client.post(
                TOKEN_PATH,
                auth=httpx.BasicAuth(
                    self.config.value("client_id"), self.config.value("client_secret")
                ),
                data={"grant_type": "client_credentials"},
                headers={"Accept": "application/json"},
            )
        body = _json_object(response)
        status = response.status_code
        if status == 200 and isinstance(body.get("access_token"), str):
            return body
        error = body.get("error") if isinstance(body.get("error"), str) else None
        if status == 401 or error == "invalid_client":
            raise GatewayMisconfigured(
                "PayPal rejected the client id or secret.", gateway_code=error or "invalid_client"
            )
        if status == 429 or status >= 500:
            raise GatewayUnavailable(
                f"PayPal answered with HTTP {status}.", gateway_code=_paypal_code(body)
            )
        if status in (200, 404, 405):
            # Not PayPal's token endpoint: most likely a wrong API base URL.
            raise GatewayMisconfigured(
                f"{base}{TOKEN_PATH} did not answer like PayPal's token endpoint "
                f"(HTTP {status}): check the API base URL."
            )
        raise GatewayRejected(
            f"PayPal refused the token request (HTTP {status}).", gateway_code=_paypal_code(body)
        )


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _paypal_code(body: dict[str, Any]) -> str | None:
    # OAuth errors use "error"; the REST APIs use "name" (e.g. INTERNAL_SERVICE_ERROR).
    for key in ("error", "name"):
        value = body.get(key)
        if isinstance(value, str):
            return value
    return None
