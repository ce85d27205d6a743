"""Health, readiness and metrics endpoints; request ids on every answer."""

from __future__ import annotations

import httpx

from tests.conftest import Tenant


async def test_health_and_readiness(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).json() == {"status": "ok"}
    ready = await client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "migrations": "current"}


async def test_metrics_count_requests(client: httpx.AsyncClient, tenant: Tenant) -> None:
    await client.get("/api/v1/gateways", headers=tenant.headers)
    metrics = (await client.get("/metrics")).text
    assert (
        'paygate_http_requests_total{method="GET",route="/api/v1/gateways",status="200"}' in metrics
    )


async def test_every_answer_carries_a_request_id(client: httpx.AsyncClient) -> None:
    response = await client.get("/api/v1/me")
    assert response.status_code == 401
    assert len(response.headers["x-request-id"]) == 16
    echoed = await client.get("/healthz", headers={"X-Request-Id": "trace-123"})
    assert echoed.headers["x-request-id"] == "trace-123"


async def test_paging_through_the_audit_log(client: httpx.AsyncClient, tenant: Tenant) -> None:
    for priority in range(5):
        await client.post(
            "/api/v1/gateways",
            json={"gateway_type": "sandbox", "priority": priority},
            headers=tenant.headers,
        )
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        params = {
            "limit": "2",
            "action": "gateway.created",
            **({"cursor": cursor} if cursor else {}),
        }
        page = (await client.get("/api/v1/audit-log", params=params, headers=tenant.headers)).json()
        seen.extend(entry["id"] for entry in page["data"])
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert len(seen) == 5
    assert seen == sorted(seen, reverse=True)
