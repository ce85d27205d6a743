"""A real receiver on 127.0.0.1, endpoints created through the API, and the delivery jobs
run in this process (as a worker would, job by job from procrastinate_jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.enqueue import DELIVER_TASK
from tests.conftest import Tenant
from tests.fakes.servers import serve_asgi
from tests.web.conftest import owner, rival  # noqa: F401  (the page tests' two companies)
from tests.webhooks.outbound.receiver import Receiver

ALL_EVENTS = [
    "payment.succeeded",
    "payment.failed",
    "payment.refunded",
    "refund.succeeded",
    "refund.failed",
    "invoice.paid",
    "payment.disputed",
    "gateway.down",
    "gateway.up",
]


@pytest.fixture(scope="session")
def _receiver_server() -> Iterator[Receiver]:
    receiver = Receiver()
    with serve_asgi(receiver.app) as url:
        receiver.base_url = url
        yield receiver


@pytest.fixture
def receiver(_receiver_server: Receiver) -> Iterator[Receiver]:
    _receiver_server.reset()
    yield _receiver_server
    _receiver_server.reset()


@pytest.fixture
def dispatcher(jobs: JobContext) -> Dispatcher:
    """Attempts with a 1 s timeout, so a hanging receiver fails an attempt quickly."""
    settings = jobs.settings.model_copy(update={"webhook_timeout_seconds": 1.0})
    return Dispatcher(jobs.database, jobs.keyring, settings)


async def create_endpoint(
    client: httpx.AsyncClient,
    tenant: Tenant,
    url: str,
    events: list[str] | None = None,
    **fields: Any,
) -> dict[str, Any]:
    response = await client.post(
        "/api/v1/webhook-endpoints",
        json={"url": url, "event_types": events or ALL_EVENTS, **fields},
        headers=tenant.headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


async def due_jobs(database: Database, at: datetime | None = None) -> list[tuple[int, str]]:
    """Delivery jobs waiting to run by `at` (now): (job id, delivery id), oldest first."""
    async with database.transaction() as session:
        rows = await session.execute(
            text(
                "SELECT id, args->>'delivery_id' FROM procrastinate_jobs"
                " WHERE task_name = :task AND status = 'todo'"
                " AND (scheduled_at IS NULL OR scheduled_at <= :at) ORDER BY id"
            ),
            {"task": DELIVER_TASK, "at": at or utcnow()},
        )
        return [(int(r[0]), str(r[1])) for r in rows]


async def run_jobs(
    database: Database,
    dispatcher: Dispatcher,
    delivery_ids: set[str] | None = None,
    *,
    at: datetime | None = None,
) -> list[str]:
    """Run the due delivery jobs (of these deliveries), as a worker would; their results."""
    results = []
    for job_id, delivery_id in await due_jobs(database, at):
        if delivery_ids is not None and delivery_id not in delivery_ids:
            continue
        async with database.transaction() as session:
            await session.execute(
                text("DELETE FROM procrastinate_jobs WHERE id = :id"), {"id": job_id}
            )
        results.append(await dispatcher.deliver(delivery_id))
    return results


async def deliveries_of(
    client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str, **params: Any
) -> list[dict[str, Any]]:
    response = await client.get(
        f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries",
        params=params,
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    data: list[dict[str, Any]] = response.json()["data"]
    return data


class Clock:
    """A clock a test moves by hand (the dispatcher's notion of now; signatures keep
    the real time, so receivers still verify them)."""

    def __init__(self, now: datetime | None = None) -> None:
        self.now = now or utcnow()

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def timed_dispatcher(jobs: JobContext, clock: Clock) -> Dispatcher:
    settings = jobs.settings.model_copy(update={"webhook_timeout_seconds": 1.0})
    return Dispatcher(jobs.database, jobs.keyring, settings, clock=clock)


async def delivery(
    client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str, delivery_id: str
) -> dict[str, Any]:
    response = await client.get(
        f"/api/v1/webhook-endpoints/{endpoint_id}/deliveries/{delivery_id}",
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def send_test(client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str) -> str:
    response = await client.post(
        f"/api/v1/webhook-endpoints/{endpoint_id}/test", headers=tenant.headers
    )
    assert response.status_code == 202, response.text
    delivery_id: str = response.json()["id"]
    return delivery_id
