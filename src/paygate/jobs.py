"""The Procrastinate app: every domain's tasks and the periodic schedules."""

from __future__ import annotations

import asyncio

import procrastinate

from paygate.accounts.tasks import blueprint as accounts_tasks
from paygate.db import Database, libpq_url
from paygate.kit.jobs_context import set_job_database


def build_job_app(database_url: str) -> procrastinate.App:
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url))
    )
    app.add_tasks_from(accounts_tasks, namespace="accounts")
    return app


async def run_worker(database: Database, *, concurrency: int = 4) -> None:
    """Run a worker until cancelled (inside `paygate serve`, or as `paygate worker`)."""
    set_job_database(database)
    app = build_job_app(database.url)
    async with app.open_async():
        await app.run_worker_async(install_signal_handlers=False, concurrency=concurrency)


def start_worker_task(database: Database) -> asyncio.Task[None]:
    return asyncio.create_task(run_worker(database), name="procrastinate-worker")
