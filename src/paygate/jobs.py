"""The Procrastinate app: every domain's tasks and the periodic schedules."""

from __future__ import annotations

import asyncio

import procrastinate

from paygate.accounts.tasks import blueprint as accounts_tasks
from paygate.db import Database, libpq_url
from paygate.gateways.tasks import blueprint as gateways_tasks
from paygate.kit.jobs_context import JobContext, set_job_context
from paygate.monitoring.tasks import blueprint as monitoring_tasks
from paygate.payments.retry_tasks import blueprint as payment_retry_tasks
from paygate.payments.tasks import blueprint as payments_tasks
from paygate.security.crypto import Keyring
from paygate.security.tasks import blueprint as security_tasks
from paygate.settings import Settings
from paygate.webhooks.inbound.tasks import blueprint as inbound_webhook_tasks
from paygate.webhooks.outbound.tasks import blueprint as outbound_webhooks_tasks

# Procrastinate namespaces the module-level blueprints in place (their tasks are renamed
# "ns:name"), so building a second app in one process would rename them again
# ("ns:ns:name") and break both apps: the app is built once per process.
_built: dict[str, procrastinate.App] = {}

# How often an idle worker looks for jobs nobody announced: received webhooks' jobs are
# inserted without a NOTIFY (migration 0018, docs/decisions.md section 25), so this bounds
# how long one waits when the worker is idle. A look that finds nothing costs one query.
JOB_POLLING_SECONDS = 0.1


def build_job_app(database_url: str) -> procrastinate.App:
    database_url = libpq_url(database_url)
    if database_url in _built:
        return _built[database_url]
    if _built:
        raise RuntimeError("a process runs jobs against one database: build_job_app once")
    app = procrastinate.App(
        connector=procrastinate.PsycopgConnector(conninfo=libpq_url(database_url))
    )
    app.add_tasks_from(accounts_tasks, namespace="accounts")
    app.add_tasks_from(payments_tasks, namespace="payments")
    app.add_tasks_from(payment_retry_tasks, namespace="payments_retries")
    app.add_tasks_from(gateways_tasks, namespace="gateways")
    app.add_tasks_from(security_tasks, namespace="security")
    app.add_tasks_from(monitoring_tasks, namespace="monitoring")
    app.add_tasks_from(inbound_webhook_tasks, namespace="webhooks_inbound")
    app.add_tasks_from(outbound_webhooks_tasks, namespace="outbound_webhooks")
    _built[database_url] = app
    return app


async def run_worker(
    database: Database, settings: Settings, keyring: Keyring, *, concurrency: int = 4
) -> None:
    """Run a worker until cancelled (inside `paygate serve`, or as `paygate worker`)."""
    set_job_context(JobContext(database, settings, keyring))
    app = build_job_app(database.url)
    async with app.open_async():
        await app.run_worker_async(
            install_signal_handlers=False,
            concurrency=concurrency,
            fetch_job_polling_interval=JOB_POLLING_SECONDS,
        )


def start_worker_task(
    database: Database, settings: Settings, keyring: Keyring
) -> asyncio.Task[None]:
    return asyncio.create_task(run_worker(database, settings, keyring), name="procrastinate-worker")
