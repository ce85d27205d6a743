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
    " CAST(:job_args AS jsonb), NULL FROM {source}"
    " ON CONFLICT (queueing_lock) WHERE status = 'todo' DO NOTHING RETURNING id"
)


@dataclass(frozen=True)
class CoalescedJob:
    """A job many writers wake and one runs: at most one waits at a time (its queueing
    lock), and it reads its work from the rows, not from its arguments.

    A writer that finds the job waiting inserts nothing, and a worker may take that job
    before the writer commits: the job would look for the writer's row too early. So
    writers hold `gate` (a transaction-scoped advisory lock) shared from before they look
    until they commit, and the job, before it concludes there is nothing left, waits for
    them (`wait_for_wakers`) and looks once more."""

    task_name: str  # namespace:name
    queue: str
    queueing_lock: str
    gate: int  # advisory lock key, unique among paygate's


def _job_params(job: CoalescedJob) -> dict[str, Any]:
    return {
        "job_queue": job.queue,
        "job_task": job.task_name,
        "job_queueing_lock": job.queueing_lock,
        "job_args": "{}",
    }


def coalesced_deferral_sql(job: CoalescedJob, *, source: str) -> tuple[str, dict[str, Any]]:
    """Two WITH items, `gate` and `woken`: for each row of `source` (a WITH item the
    statement defines; none, no job), hold the gate shared, then defer `job` unless one
    already waits. Their parameters too."""
    params = {**_job_params(job), "job_gate": job.gate}
    # `woken` reads `gate`, so the gate is held before the waiting job is looked for.
    sql = (
        f"gate AS (SELECT pg_advisory_xact_lock_shared(:job_gate) FROM {source}),"  # noqa: S608 (names, no values)
        f" woken AS ({_COALESCED.format(source='gate')})"
    )
    return sql, params


async def defer_coalesced(session: AsyncSession, job: CoalescedJob) -> bool:
    """Defer `job` unless one already waits; whether it did. For the job itself (handing
    over, or asking for help): it writes no rows the job must find."""
    statement = _COALESCED.format(source="(SELECT 1) AS one")
    inserted = await session.execute(text(statement), _job_params(job))
    return inserted.first() is not None


async def wait_for_wakers(session: AsyncSession, job: CoalescedJob) -> None:
    """Return once every transaction that woke `job`, or found it waiting, before now has
    ended: their rows are then visible to the next statement (READ COMMITTED). Holds the
    gate until the session's transaction ends: keep that transaction short."""
    await session.execute(text("SELECT pg_advisory_xact_lock(:gate)"), {"gate": job.gate})
