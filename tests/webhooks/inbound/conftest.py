"""Each test runs the processing jobs it deferred, not the ones an earlier test left."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from paygate.db import Database


@pytest.fixture(autouse=True)
async def _no_leftover_webhook_jobs(database: Database) -> AsyncIterator[None]:
    yield
    async with database.transaction() as session:
        await session.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                "AND task_name LIKE 'webhooks_inbound:%'"
            )
        )
