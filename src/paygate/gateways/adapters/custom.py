"""A custom HTTP gateway implementing paygate's contract (docs/custom-gateway.md)."""

from __future__ import annotations

from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

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
    type=GatewayType.CUSTOM,
    display_name="Custom gateway",
    description=(
        "Your own payment service, or a provider paygate does not support yet, "
        "speaking paygate's custom gateway HTTP contract."
    ),
    payment_method_types=("card",),
    fields=(
        FieldSpec(
            name="base_url",
            label="Base URL",
            kind=FieldKind.URL,
            help=(
                "Where the gateway's API lives, e.g. https://payments.example.com/paygate/v1. "
                "paygate calls {base URL}/health, {base URL}/payments and so on."
            ),
        ),
        FieldSpec(
            name="api_key",
            label="API key",
            kind=FieldKind.SECRET,
            help=(
                "The key the gateway's operator issued for paygate; paygate sends it as "
                "'Authorization: Bearer <key>' on every call."
            ),
        ),
        FieldSpec(
            name="webhook_secret",
            label="Webhook signing secret",
            kind=FieldKind.SECRET,
            required=False,
            help=(
                "The Standard Webhooks secret (whsec_ followed by base64) the gateway signs "
                "its webhooks with; its operator gives it to you with the API key. "
                "Optional: needed only to verify webhooks."
            ),
            prefixes={Environment.TEST: ("whsec_",), Environment.LIVE: ("whsec_",)},
        ),
    ),
)


class CustomGatewayAdapter:
    spec: ClassVar[GatewayTypeSpec] = SPEC

    def __init__(self, config: AdapterConfig) -> None:
        self.config = config

    def _base_url(self) -> str:
        return self.config.value("base_url").rstrip("/")

    def _auth_headers(self) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.config.value('api_key')}",
            "Accept": "application/json",
        }

    async def test_connection(self) -> ConnectionCheck:
        base = self._base_url()

        async def send() -> ConnectionCheck:
            async with http_client(self.config, base_url=base) as client:
                response = await client.get("/health", headers=self._auth_headers())
            body = _json_object(response)
            status = response.status_code
            if status == 200 and body.get("status") == "ok":
                host = urlsplit(base).netloc or base
                return ConnectionCheck(message=f"Connected to the custom gateway at {host}.")
            raise _map_health_error(response, body)

        return await call_gateway(self.config, "test_connection", send)


def _json_object(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _error_type(body: dict[str, Any]) -> str | None:
    # The contract's error body: {"error": {"type": ..., "message": ..., "param": ...}}.
    error = body.get("error")
    if isinstance(error, dict) and isinstance(error.get("type"), str):
        return str(error["type"])
    return None


def _map_health_error(response: httpx.Response, body: dict[str, Any]) -> GatewayError:
    status = response.status_code
    code = _error_type(body)
    if status in (401, 403):
        return GatewayMisconfigured(
            f"The custom gateway rejected the API key (HTTP {status}).", gateway_code=code
        )
    if status == 200:
        reported = body.get("status")
        if isinstance(reported, str):
            return GatewayUnavailable(
                f"The custom gateway reports its status as {reported!r}, not 'ok'.",
                gateway_code=reported,
            )
        return GatewayMisconfigured(
            "The base URL answered /health without the contract's JSON "
            '{"status": "ok"}: check the base URL.'
        )
    if status == 429 or status >= 500:
        return GatewayUnavailable(
            f"The custom gateway answered with HTTP {status}.", gateway_code=code
        )
    if status in (404, 405):
        return GatewayMisconfigured(
            f"The custom gateway has no /health endpoint at this base URL (HTTP {status})."
        )
    return GatewayRejected(
        f"The custom gateway refused the health check (HTTP {status}).", gateway_code=code
    )
