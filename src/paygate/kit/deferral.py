"""Deferring a job inside the caller's own transaction: the job exists only if it commits."""

from __future__ import annotations

import json
from datetime import datetime
from functools import lru_cache
from typing import Any

import procrastinate
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.sql import driver_connection


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
    queueing_lock: str | None = None,
    **task_kwargs: Any,
) -> int:
    """Defer `task_name` (namespace:name) on the session's connection; returns the job id.

    `schedule_at`: not before then (a retry's backoff); None runs it as soon as a worker can.
    `queueing_lock`: at most one such job waiting (procrastinate.exceptions.AlreadyEnqueued
    otherwise; defer in a savepoint when that is expected).
    """
    job_id: int = (
        await _deferring_app()
        .configure_task(
            task_name,
            connection=await driver_connection(session),
            queue=queue,
            schedule_at=schedule_at,
            queueing_lock=queueing_lock,
        )
        .defer_async(**task_kwargs)
    )
    return job_id


# The SQL function procrastinate's own `defer_async` calls (its query "defer_jobs"), with
# one job of default priority, no lock, due at once. A test in
# tests/webhooks/inbound/test_receive.py checks that the installed procrastinate still
# defers through it, and writes the same job.
DEFER_FUNCTION = "procrastinate_defer_jobs_v1"
_DEFER_ONE = (
    f"{DEFER_FUNCTION}(ARRAY[ROW(:job_queue, :job_task, 0, NULL, NULL,"
    " CAST(:job_args AS jsonb), NULL)::procrastinate_job_to_defer_v1])"
)


def deferral_sql(task_name: str, *, queue: str, **task_kwargs: Any) -> tuple[str, dict[str, Any]]:
    """An SQL expression that defers `task_name` when it is evaluated (its value: the job
    ids), and its parameters: a statement that writes a row can defer the row's job too,
    atomically and in the same round trip."""
    params = {"job_queue": queue, "job_task": task_name, "job_args": json.dumps(task_kwargs)}
    return _DEFER_ONE, params
