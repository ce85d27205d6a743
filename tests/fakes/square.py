"""A Square API emulator, written from developer.squareup.com's reference.

Implemented now (what "test connection" needs):
- GET /v2/locations: every location of the seller, sorted by name, as
  {"locations": [Location, ...]}.
- GET /v2/locations/{location_id}: {"location": Location}, or 404 NOT_FOUND
  ("main" answers the main location, as Square does).

Every route takes `Authorization: Bearer <access token>`; a missing or malformed
header or an unknown token answers 401 with Square's error body
{"errors": [{"category": "AUTHENTICATION_ERROR", "code": "UNAUTHORIZED", "detail": ...}]}.
The `Square-Version` header is accepted whatever its value and recorded in
`square_versions`. Payments and refunds (POST /v2/payments, ...) come later on
the same state: add routes to `routes()` and use `authenticate()` / `error()`.
"""

from __future__ import annotations

import secrets
import string
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from tests.fakes.common import Emulator

DEFAULT_ACCESS_TOKEN = "EAAAl8zW3jQyq0n4xbgZ5dYtSfm1cK2a9pV7uHrEoT6iLwN0BsJeXvRkMCPhUDGg"
DEFAULT_MERCHANT_ID = "MLQW9R4BJ2KX7"
DEFAULT_LOCATION_ID = "LH2XR7AMG39HX"

_ID_ALPHABET = string.ascii_uppercase + string.digits


def new_location_id() -> str:
    # Square ids are 13 upper-case letters and digits; locations start with L.
    return "L" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def square_error(category: str, code: str, detail: str, field: str | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {"category": category, "code": code, "detail": detail}
    if field is not None:
        error["field"] = field
    return {"errors": [error]}


class SquareEmulator(Emulator):
    def __init__(
        self,
        *,
        access_token: str = DEFAULT_ACCESS_TOKEN,
        merchant_id: str = DEFAULT_MERCHANT_ID,
        location_id: str = DEFAULT_LOCATION_ID,
    ) -> None:
        super().__init__()
        self.access_token = access_token
        self.merchant_id = merchant_id
        self.location_id = location_id
        self.main_location_id = location_id
        self._initial = (access_token, location_id)
        # Further valid tokens a test may add besides `access_token`.
        self.extra_tokens: set[str] = set()
        self.locations: dict[str, dict[str, Any]] = {}
        self.square_versions: list[str] = []
        self._seed()
        self.app: ASGIApp = self.wrap(Starlette(routes=self.routes()))

    def routes(self) -> list[Route]:
        return [
            Route("/v2/locations", self._list_locations, methods=["GET"]),
            Route("/v2/locations/{location_id}", self._retrieve_location, methods=["GET"]),
        ]

    def _seed(self) -> None:
        self.locations.clear()
        self.add_location("Main Street", location_id=self.location_id, main=True)

    def reset(self) -> None:
        super().reset()
        self.access_token, self.location_id = self._initial
        self.extra_tokens.clear()
        self.square_versions.clear()
        self._seed()

    def add_location(
        self,
        name: str,
        *,
        location_id: str | None = None,
        status: str = "ACTIVE",
        currency: str = "USD",
        country: str = "US",
        main: bool = False,
    ) -> dict[str, Any]:
        """Add a location shaped like Square's `Location` object and return it."""
        new_id = location_id or new_location_id()
        location: dict[str, Any] = {
            "id": new_id,
            "name": name,
            "address": {
                "address_line_1": "1600 Pennsylvania Ave",
                "locality": "San Francisco",
                "administrative_district_level_1": "CA",
                "postal_code": "94103",
                "country": country,
            },
            "timezone": "America/Los_Angeles",
            "capabilities": ["CREDIT_CARD_PROCESSING", "AUTOMATIC_TRANSFERS"],
            "status": status,
            "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            "merchant_id": self.merchant_id,
            "country": country,
            "language_code": "en-US",
            "currency": currency,
            "business_name": "Paygate Test Shop",
            "type": "PHYSICAL",
            "business_hours": {},
            "mcc": "7299",
        }
        self.locations[new_id] = location
        if main:
            self.main_location_id = new_id
        return location

    def server_error_body(self, status: int) -> dict[str, Any]:
        if status == 503:
            return square_error(
                "API_ERROR", "SERVICE_UNAVAILABLE", "The service is temporarily unavailable."
            )
        if status == 504:
            return square_error("API_ERROR", "GATEWAY_TIMEOUT", "The gateway timed out.")
        return square_error("API_ERROR", "INTERNAL_SERVER_ERROR", "An internal error has occurred.")

    # --- auth -----------------------------------------------------------------------

    def authenticate(self, request: Request) -> Response | None:
        """None when the Bearer token is valid, else Square's 401 answer."""
        version = request.headers.get("square-version")
        if version:
            self.square_versions.append(version)
        header = request.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme != "Bearer" or not token:
            return self.error(
                401,
                "AUTHENTICATION_ERROR",
                "UNAUTHORIZED",
                "The `Authorization` http header of your request was malformed. The header "
                'value is expected to be of the format "Bearer TOKEN" (without quotation '
                "marks), where TOKEN is to be replaced with your access token.",
            )
        if token != self.access_token and token not in self.extra_tokens:
            return self.error(
                401, "AUTHENTICATION_ERROR", "UNAUTHORIZED", "This request could not be authorized."
            )
        return None

    def error(
        self, status: int, category: str, code: str, detail: str, field: str | None = None
    ) -> JSONResponse:
        return JSONResponse(square_error(category, code, detail, field), status_code=status)

    # --- locations ------------------------------------------------------------------

    async def _list_locations(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        ordered = sorted(self.locations.values(), key=lambda loc: str(loc["name"]))
        return JSONResponse({"locations": ordered})

    async def _retrieve_location(self, request: Request) -> Response:
        if (denied := self.authenticate(request)) is not None:
            return denied
        location_id = request.path_params["location_id"]
        if location_id == "main":
            location_id = self.main_location_id
        location = self.locations.get(location_id)
        if location is None:
            return self.error(
                404,
                "INVALID_REQUEST_ERROR",
                "NOT_FOUND",
                f"Location with id `{location_id}` not found.",
            )
        return JSONResponse({"location": location})
