"""Each test runs the processing jobs it deferred, on the events it received, not what an
earlier test left; and the scene most tests start from."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.webhooks.inbound.helpers import Scene, new_scene


async def _discard_pending_webhook_jobs(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                "AND task_name LIKE 'webhooks_inbound:%'"
            )
        )
        # A received events' job runs every event not yet attempted, whoever received it.
        await session.execute(
            text("DELETE FROM webhook_events WHERE status = 'pending' AND attempts = 0")
        )


@pytest.fixture(autouse=True)
async def _no_leftover_webhook_jobs(database: Database) -> AsyncIterator[None]:
    # Before as well as after: tests outside this directory (the browser tests, for one)
    # receive webhooks without running the jobs, and the whole suite shares one database.
    await _discard_pending_webhook_jobs(database)
    yield
    await _discard_pending_webhook_jobs(database)


@pytest.fixture
async def scene(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,  # a second company exists, as in every scenario
    database: Database,
    jobs: JobContext,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> Scene:
    """A custom gateway signing its webhooks and a payment it left processing."""
    return await new_scene(client, tenant, database, jobs, custom_gateway_emulator)
