"""Bad input of every kind gets a clear 4xx problem+json and changes nothing."""

from __future__ import annotations

import httpx
import pytest

from tests.conftest import Tenant
from tests.gateways.helpers import create_gateway, sandbox_payload

PROBLEM = "application/problem+json"


async def gateways_of(client: httpx.AsyncClient, tenant: Tenant) -> list[dict[str, object]]:
    listed: list[dict[str, object]] = (
        await client.get("/api/v1/gateways", headers=tenant.headers)
    ).json()
    return listed


@pytest.mark.parametrize(
    ("body", "status", "problem"),
    [
        (b'{"gateway_type": "sandbox",', 400, "malformed-json"),
        (b"[1, 2, 3]", 422, "validation-error"),
        (b'"just a string"', 422, "validation-error"),
        (b'{"gateway_type": 7}', 422, "validation-error"),
        (b'{"gateway_type": "sandbox", "priority": 1e309}', 422, "validation-error"),
        (b'{"gateway_type": "sandbox", "name": ""}', 422, "validation-error"),
        (b'{"gateway_type": "sandbox", "name": "' + b"n" * 500 + b'"}', 422, "validation-error"),
        (b'{"gateway_type": "sandbox", "configuration": {"a": {"b": 1}}}', 422, "validation-error"),
    ],
)
async def test_malformed_bodies(
    client: httpx.AsyncClient, tenant: Tenant, body: bytes, status: int, problem: str
) -> None:
    response = await client.post(
        "/api/v1/gateways",
        content=body,
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"].endswith(f"/{problem}")
    assert "Traceback" not in response.text
    assert await gateways_of(client, tenant) == []


async def test_oversized_bodies_are_refused(client: httpx.AsyncClient, tenant: Tenant) -> None:
    huge = b'{"gateway_type": "sandbox", "name": "' + b"x" * 100_000 + b'"}'
    response = await client.post(
        "/api/v1/gateways",
        content=huge,
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM

    async def stream() -> object:
        for _ in range(100):
            yield b"x" * 1024

    streamed = await client.post(
        "/api/v1/gateways",
        content=stream(),
        headers={**tenant.headers, "content-type": "application/json"},
    )
    assert streamed.status_code == 413
    not_a_number = await client.post(
        "/api/v1/gateways", content=b"{}", headers={**tenant.headers, "content-length": "abc"}
    )
    assert not_a_number.status_code == 400
    assert await gateways_of(client, tenant) == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/gateways/{id}"),
        ("PATCH", "/api/v1/gateways/{id}"),
        ("DELETE", "/api/v1/gateways/{id}"),
        ("POST", "/api/v1/gateways/{id}/enable"),
        ("POST", "/api/v1/gateways/{id}/disable"),
        ("POST", "/api/v1/gateways/{id}/test"),
    ],
)
async def test_unknown_and_foreign_ids_are_404_and_change_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, method: str, path: str
) -> None:
    theirs = await create_gateway(client, other_tenant, sandbox_payload("Theirs"))
    before = await gateways_of(client, other_tenant)
    for gateway_id in [
        "gw_01JD0000000000000000000000",
        theirs["id"],
        "../../etc/passwd",
        "x" * 300,
    ]:
        response = await client.request(
            method,
            path.format(id=gateway_id),
            headers=tenant.headers,
            json={"name": "Hijacked"} if method == "PATCH" else None,
        )
        assert response.status_code == 404, (gateway_id, response.text)
        assert response.headers["content-type"] == PROBLEM
    assert await gateways_of(client, other_tenant) == before


async def test_unknown_routes_and_methods(client: httpx.AsyncClient, tenant: Tenant) -> None:
    missing = await client.get("/api/v1/nothing-here", headers=tenant.headers)
    assert missing.status_code == 404
    assert missing.headers["content-type"] == PROBLEM
    assert missing.json()["detail"] == "No such route."
    wrong_method = await client.put("/api/v1/gateways", headers=tenant.headers)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["content-type"] == PROBLEM


async def test_query_parameters_are_validated(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for params in [{"limit": "0"}, {"limit": "10000"}, {"limit": "ten"}, {"since": "yesterday"}]:
        response = await client.get("/api/v1/audit-log", params=params, headers=tenant.headers)
        assert response.status_code == 422, params
        assert response.headers["content-type"] == PROBLEM
