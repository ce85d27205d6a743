"""Deferring a job inside the caller's own transaction: the job exists only if it commits."""

from __future__ import annotations

from datetime import datetime
from functools import lru_cache
from typing import Any

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession


@lru_cache(maxsize=1)
def _deferring_app() -> procrastinate.App:
    # Never opened: with an explicit connection, deferring does not touch its pool, and a
    # job named by its task name needs no task registered here (the worker has them).
    return procrastinate.App(connector=procrastinate.PsycopgConnector())


async def defer_in_transaction(
    session: AsyncSession,
    task_name: str,
    *,
    queue: str,
    schedule_at: datetime | None = None,
    **task_kwargs: Any,
) -> int:
    """Defer `task_name` (namespace:name) on the session's connection; returns the job id.
    `schedule_at`: not before then (a retry's backoff)."""
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    job_id: int = (
        await _deferring_app()
        .configure_task(
            task_name, connection=raw.driver_connection, queue=queue, schedule_at=schedule_at
        )
        .defer_async(**task_kwargs)
    )
    return job_id
