"""Deferring a job inside the caller's own transaction: the job exists only if it commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from typing import Any

import procrastinate
from sqlalchemy import text
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


# A job inserted as procrastinate's own defer (`procrastinate_defer_jobs_v1`) inserts it:
# default priority, no lock, due at once. At most one job of a queueing lock waits (a
# unique index); where procrastinate's defer fails on it, this leaves the waiting one be.
# tests/webhooks/inbound/test_receive.py checks both against the installed procrastinate.
_COALESCED = (
    "INSERT INTO procrastinate_jobs (queue_name, task_name, priority, lock, queueing_lock,"
    " args, scheduled_at) SELECT :job_queue, :job_task, 0, NULL, :job_queueing_lock,"
    " CAST(:job_args AS jsonb), NULL WHERE {guard}"
    " ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING RETURNING id"
)


@dataclass(frozen=True)
class CoalescedJob:
    """A job many writers wake and one runs: at most one waits at a time (its queueing
    lock), and it reads its work from the rows, not from its arguments."""

    task_name: str  # namespace:name
    queue: str
    queueing_lock: str


def coalesced_deferral_sql(job: CoalescedJob, *, guard: str = "true") -> tuple[str, dict[str, Any]]:
    """An INSERT (for a WITH clause) that defers `job` when `guard` holds, unless one
    already waits, and its parameters."""
    params = {
        "job_queue": job.queue,
        "job_task": job.task_name,
        "job_queueing_lock": job.queueing_lock,
        "job_args": "{}",
    }
    return _COALESCED.format(guard=guard), params


async def defer_coalesced(session: AsyncSession, job: CoalescedJob) -> bool:
    """Defer `job` unless one already waits; whether it did."""
    statement, params = coalesced_deferral_sql(job)
    inserted = await session.execute(text(statement), params)
    return inserted.first() is not None
