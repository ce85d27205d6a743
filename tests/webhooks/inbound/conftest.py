"""Each test runs the processing jobs it deferred, not the ones an earlier test left."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text

from paygate.db import Database


async def _discard_pending_webhook_jobs(database: Database) -> None:
    async with database.transaction() as session:
        await session.execute(
            text(
                "DELETE FROM procrastinate_jobs WHERE status = 'todo' "
                "AND task_name LIKE 'webhooks_inbound:%'"
            )
        )


@pytest.fixture(autouse=True)
async def _no_leftover_webhook_jobs(database: Database) -> AsyncIterator[None]:
    # Before as well as after: tests outside this directory (the browser tests, for one)
    # receive webhooks without running the jobs, and the whole suite shares one database.
    await _discard_pending_webhook_jobs(database)
    yield
    await _discard_pending_webhook_jobs(database)
