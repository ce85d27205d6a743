"""A PayPal REST API emulator, written from developer.paypal.com's reference.

Implemented now:
- POST /v1/oauth2/token: client credentials grant with HTTP basic auth
  (client_id:client_secret) and a form body `grant_type=client_credentials`.
  200 answers PayPal's body {scope, access_token, token_type "Bearer", app_id,
  expires_in, nonce}; bad or missing credentials answer 401
  {"error": "invalid_client", "error_description": "Client Authentication failed"};
  a missing or other grant type answers 400 `unsupported_grant_type`.

Ready for the routes that come later (Orders v2, captures, refunds, webhooks):
`authenticate(request)` checks a Bearer token this emulator issued and answers
PayPal's REST 401 body (`AUTHENTICATION_FAILURE`) otherwise; `rest_error()` builds
PayPal's REST error body {name, message, debug_id, details, links}.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.fakes.common import Emulator

DEFAULT_CLIENT_ID = "AQkquBDf1zctJOWGKWUEtKXm6qVhueUEMvXO_-MCI4DQQ4-LWvkDLIN2fGsd"
DEFAULT_CLIENT_SECRET = "EL1tVxAjhT7cJimnz5-Nsx9k2reTKSVfErNQF-CmrwJgxRtylkGTKlU4RvrX"
DEFAULT_APP_ID = "APP-80W284485P519543T"
# PayPal's tokens live about nine hours.
DEFAULT_TOKEN_TTL_SECONDS = 32400

SCOPES = " ".join(
    (
        "https://uri.paypal.com/services/invoicing",
        "https://uri.paypal.com/services/vault/payment-tokens/read",
        "https://uri.paypal.com/services/disputes/read-buyer",
        "https://uri.paypal.com/services/payments/realtimepayment",
        "https://uri.paypal.com/services/payments/payment/authcapture",
        "https://uri.paypal.com/services/payments/refund",
        "https://uri.paypal.com/services/applications/webhooks",
        "openid",
    )
)

_INFO_LINK = "https://developer.paypal.com/api/rest/reference/orders/v2/errors/"


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    client_id: str
    expires_at: float

    @property
    def expired(self) -> bool:
        return time.time() >= self.expires_at


class PayPalEmulator(Emulator):
    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        app_id: str = DEFAULT_APP_ID,
        token_ttl_seconds: int = DEFAULT_TOKEN_TTL_SECONDS,
    ) -> None:
        super().__init__()
        self.client_id = client_id
        self.client_secret = client_secret
        self.app_id = app_id
        self.token_ttl_seconds = token_ttl_seconds
        self._initial = (client_id, client_secret)
        # More REST apps (client id -> secret) a test may add besides the main one.
        self.apps: dict[str, str] = {}
        self.tokens: dict[str, IssuedToken] = {}
        self.app: ASGIApp = self.wrap(
            Starlette(routes=[Route("/v1/oauth2/token", self._token, methods=["POST"])])
        )

    def reset(self) -> None:
        super().reset()
        self.client_id, self.client_secret = self._initial
        self.apps = {}
        self.tokens.clear()

    def server_error_body(self, status: int) -> dict[str, Any]:
        if status == 503:
            return self.rest_error("SERVICE_UNAVAILABLE", "Service Unavailable.")
        return self.rest_error("INTERNAL_SERVER_ERROR", "An internal server error occurred.")

    # --- OAuth ----------------------------------------------------------------------

    async def _token(self, request: Request) -> Response:
        client_id = self._basic_auth_client(request)
        if client_id is None:
            return JSONResponse(
                {"error": "invalid_client", "error_description": "Client Authentication failed"},
                status_code=401,
            )
        form = await request.form()
        grant_type = form.get("grant_type")
        if not grant_type:
            return JSONResponse(
                {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"},
                status_code=400,
            )
        if grant_type != "client_credentials":
            return JSONResponse(
                {
                    "error": "unsupported_grant_type",
                    "error_description": f"Grant Type {grant_type} is not supported",
                },
                status_code=400,
            )
        token = IssuedToken(
            access_token=f"A21AA{secrets.token_urlsafe(60)}",
            client_id=client_id,
            expires_at=time.time() + self.token_ttl_seconds,
        )
        self.tokens[token.access_token] = token
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return JSONResponse(
            {
                "scope": SCOPES,
                "access_token": token.access_token,
                "token_type": "Bearer",
                "app_id": self.app_id,
                "expires_in": self.token_ttl_seconds,
                "nonce": f"{now}{secrets.token_urlsafe(32)}",
            }
        )

    def _basic_auth_client(self, request: Request) -> str | None:
        """The client id of valid basic credentials, else None."""
        header = request.headers.get("authorization", "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            return None
        try:
            decoded = base64.b64decode(encoded, validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, secret = decoded.partition(":")
        # Read live, so a test can rotate the secret by assigning client_secret.
        known = {**self.apps, self.client_id: self.client_secret}
        expected = known.get(client_id)
        if not sep or expected is None or not secrets.compare_digest(expected, secret):
            return None
        return client_id

    # --- helpers for the REST routes that come later --------------------------------

    def authenticate(self, request: Request) -> IssuedToken | Response:
        """The token of a REST call, or PayPal's 401 answer."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        token = self.tokens.get(value) if scheme.lower() == "bearer" else None
        if token is None or token.expired:
            body = self.rest_error(
                "AUTHENTICATION_FAILURE",
                "Authentication failed due to invalid authentication credentials or a "
                "missing Authorization header.",
                links=[
                    {
                        "href": "https://developer.paypal.com/docs/api/overview/#error",
                        "rel": "information_link",
                    }
                ],
            )
            return JSONResponse(body, status_code=401)
        return token

    def rest_error(
        self,
        name: str,
        message: str,
        *,
        details: list[dict[str, Any]] | None = None,
        links: list[dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """PayPal's REST error body."""
        body: dict[str, Any] = {
            "name": name,
            "message": message,
            "debug_id": secrets.token_hex(7)[:13],
        }
        if details:
            body["details"] = details
        body["links"] = links or [
            {"href": f"{_INFO_LINK}#{name}", "rel": "information_link", "method": "GET"}
        ]
        return body
