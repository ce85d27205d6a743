"""Every string paygate accepts has a length bound, so hostile input stays small.

The first test walks the app's own OpenAPI document: a new request field or parameter
without `maxLength` (or an enum or format that bounds it) fails here, not in production.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.invoices.models import Invoice
from paygate.kit.errors import Problem
from paygate.web.pay_forms import parse_card
from tests.conftest import Tenant
from tests.web.helpers import new_client, sign_up

# Formats whose values have a bounded length on their own.
BOUNDED_FORMATS = {"date", "date-time", "uuid", "time"}


def _resolve(schema: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document["components"]["schemas"][name]
    return schema


def unbounded(
    schema: dict[str, Any],
    document: dict[str, Any],
    where: str,
    seen: frozenset[str],
    outer_max_length: bool = False,
) -> Iterator[str]:
    """Paths inside `schema` of strings without maxLength and arrays without maxItems.

    A maxLength next to anyOf bounds every string alternative (JSON Schema applies it to
    any string instance).
    """
    ref = schema.get("$ref")
    if ref is not None:
        if ref in seen:
            return
        seen = seen | {ref}
    schema = _resolve(schema, document)
    for key in ("anyOf", "oneOf", "allOf"):
        for index, option in enumerate(schema.get(key, [])):
            yield from unbounded(option, document, f"{where}|{index}", seen, "maxLength" in schema)
    kind = schema.get("type")
    if kind == "string":
        bounded = (
            outer_max_length
            or "maxLength" in schema
            or "enum" in schema
            or "const" in schema
            or schema.get("format") in BOUNDED_FORMATS
        )
        if not bounded:
            yield where
    elif kind == "array":
        if "maxItems" not in schema:
            yield f"{where} (array without maxItems)"
        yield from unbounded(schema.get("items", {}), document, f"{where}[]", seen)
    elif kind == "object" or "properties" in schema:
        for name, child in schema.get("properties", {}).items():
            yield from unbounded(child, document, f"{where}.{name}", seen)
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            if "maxProperties" not in schema:
                yield f"{where} (map without maxProperties)"
            if "propertyNames" in schema:
                yield from unbounded(schema["propertyNames"], document, f"{where}{{key}}", seen)
            elif extra:
                yield f"{where}{{key}} (map keys unbounded)"
            yield from unbounded(extra, document, f"{where}{{}}", seen)


def request_strings_without_bounds(document: dict[str, Any]) -> list[str]:
    found: list[str] = []
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            name = f"{method.upper()} {path}"
            for parameter in operation.get("parameters", []):
                where = f"{name} {parameter['in']} {parameter['name']}"
                found.extend(unbounded(parameter.get("schema", {}), document, where, frozenset()))
            for media, body in operation.get("requestBody", {}).get("content", {}).items():
                schema = body.get("schema", {})
                found.extend(unbounded(schema, document, f"{name} body({media})", frozenset()))
    return found


async def test_every_request_string_in_the_openapi_document_is_bounded(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/api/openapi.json")).json()
    assert len(document["paths"]) > 10  # the walk saw the real API
    assert request_strings_without_bounds(document) == []


def test_the_walk_finds_an_unbounded_field() -> None:
    document: dict[str, Any] = {
        "components": {
            "schemas": {
                "Thing": {
                    "type": "object",
                    "properties": {
                        "ok": {"type": "string", "maxLength": 5},
                        "kind": {"type": "string", "enum": ["a"]},
                        "free": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                        "tags": {"type": "array", "items": {"type": "string", "maxLength": 3}},
                    },
                }
            }
        },
        "paths": {
            "/things/{id}": {
                "post": {
                    "parameters": [{"in": "path", "name": "id", "schema": {"type": "string"}}],
                    "requestBody": {
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/Thing"}}
                        }
                    },
                }
            }
        },
    }
    assert request_strings_without_bounds(document) == [
        "POST /things/{id} path id",
        "POST /things/{id} body(application/json).free|0",
        "POST /things/{id} body(application/json).tags (array without maxItems)",
    ]


# --- over-long values at real endpoints change nothing ---------------------------------


async def count(database: Database, model: type[Gateway] | type[Invoice], tenant: Tenant) -> int:
    async with database.transaction() as session:
        number = await session.scalar(
            select(func.count()).select_from(model).where(model.company_id == tenant.company_id)
        )
    return int(number or 0)


async def test_an_over_long_gateway_name_is_refused_and_nothing_saved(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    response = await client.post(
        "/api/v1/gateways",
        json={"gateway_type": "sandbox", "name": "n" * 101},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert [e["field"] for e in response.json()["errors"]] == ["name"]
    assert await count(database, Gateway, tenant) == 0


async def test_an_over_long_invoice_field_is_refused_and_nothing_saved(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    invoice = {
        "customer": {"name": "Ada", "email": "ada@example.com"},
        "currency": "USD",
        "line_items": [{"description": "d" * 501, "quantity": 1, "unit_amount": 100}],
        "memo": "m" * 2001,
    }
    response = await client.post("/api/v1/invoices", json=invoice, headers=tenant.headers)
    assert response.status_code == 422
    fields = sorted(e["field"] for e in response.json()["errors"])
    assert fields == ["line_items.0.description", "memo"]
    assert await count(database, Invoice, tenant) == 0


async def test_an_over_long_api_key_name_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.post(
        "/api/v1/api-keys",
        json={"name": "k" * 101, "scopes": ["invoices:read"]},
        headers=tenant.headers,
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["name"]
    keys = (await client.get("/api/v1/api-keys", headers=tenant.headers)).json()
    assert keys == []


async def test_an_over_long_query_parameter_is_refused(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    response = await client.get(
        "/api/v1/invoices", params={"customer": "a" * 400}, headers=tenant.headers
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["customer"]


async def test_an_over_long_path_id_is_simply_unknown(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """Ids are bounded (maxLength 40 in the document), and a longer one cannot exist: 404,
    the answer for every unknown or foreign id."""
    response = await client.get("/api/v1/gateways/" + "g" * 5000, headers=tenant.headers)
    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"


async def test_an_over_long_name_in_the_gateway_form_is_refused(app: Any) -> None:
    async with new_client(app) as browser:
        user = await sign_up(browser)
        response = await user.post("/gateways", {"gateway_type": "sandbox", "name": "n" * 5000})
        assert response.status_code == 422
        assert "String should have at most 100 characters." in response.text
        listed = await browser.get("/api/v1/gateways", headers=user.bearer)
        assert listed.json() == []


async def test_an_over_long_return_url_is_refused_before_anything_happens(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    """The column holds 2048 characters; a longer URL used to reach the database (500)."""
    response = await client.post(
        "/api/v1/invoices/inv_01ARZ3NDEKTSV4RRFFQ69G5FAV/payments",
        json={"return_url": "https://shop.example.com/" + "r" * 2030},
        headers={**tenant.headers, "Idempotency-Key": "over-long-return-url"},
    )
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["return_url"]


def test_an_over_long_card_name_on_the_payment_page_is_a_field_error() -> None:
    form = {
        "card_number": "4242424242424242",
        "card_expiry": "12/99",
        "card_cvc": "123",
        "card_name": "n" * 201,
    }
    with pytest.raises(Problem) as refused:
        parse_card(form)
    assert [e.field for e in refused.value.errors] == ["card_name"]
