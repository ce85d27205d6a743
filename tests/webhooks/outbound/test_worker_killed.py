"""A worker killed with SIGKILL in the middle of a delivery loses nothing: the delivery's
claim lapses, the sweeper hands it to a new job, and a restarted worker delivers it, at
most once more."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import update

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.webhooks.outbound.models import WebhookDelivery
from paygate.webhooks.outbound.tasks import sweep_overdue_deliveries
from tests.conftest import Tenant
from tests.fakes.servers import serve_asgi
from tests.webhooks.outbound.conftest import create_endpoint, delivery, send_test
from tests.webhooks.outbound.receiver import HANG, Receiver

# A worker of the webhooks queue only: the shared test database holds other tests' jobs.
WORKER = """
import asyncio
from paygate.db import Database
from paygate.jobs import build_job_app
from paygate.kit.jobs_context import JobContext, set_job_context
from paygate.security.crypto import Keyring
from paygate.settings import Settings

async def main() -> None:
    settings = Settings()
    database = Database(settings.database_url)
    set_job_context(JobContext(database, settings, Keyring.parse(settings.master_keys_text())))
    app = build_job_app(database.url)
    async with app.open_async():
        await app.run_worker_async(queues=["webhooks"], concurrency=1, wait=True)

asyncio.run(main())
"""


@contextmanager
def worker(
    database_url: str, master_keys: str, data_dir: Path
) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "PAYGATE_MODE": "test",
        "PAYGATE_DATABASE_URL": database_url,
        "PAYGATE_MASTER_KEYS": master_keys,
        "PAYGATE_DATA_DIR": str(data_dir),
        "PAYGATE_WEBHOOK_TIMEOUT_SECONDS": "30",
        "PAYGATE_LOG_LEVEL": "WARNING",
    }
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.05)


async def test_a_worker_killed_mid_delivery_loses_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    database_url: str,
    master_keys: str,
    tmp_path: Path,
) -> None:
    receiver = Receiver()
    receiver.plan.append(HANG)
    receiver.hang_seconds = 20.0
    with serve_asgi(receiver.app) as url:
        receiver.base_url = url
        endpoint = await create_endpoint(client, tenant, receiver.url())
        receiver.secrets.append(endpoint["signing_secret"])
        delivery_id = await send_test(client, tenant, endpoint["id"])
        state = await delivery(client, tenant, endpoint["id"], delivery_id)
        webhook_id = state["message_id"]

        with worker(database_url, master_keys, tmp_path) as first:
            wait_until(lambda: webhook_id in receiver.arrivals)  # the request is in flight
            os.kill(first.pid, signal.SIGKILL)
            first.wait(timeout=10)

        claimed = await delivery(client, tenant, endpoint["id"], delivery_id)
        assert (claimed["status"], claimed["attempt_count"]) == ("pending", 1)
        assert claimed["attempts"] == []  # the worker died before it could record anything

        # Time passes: the claim's lease lapses and the sweeper runs.
        async with database.transaction() as session:
            await session.execute(
                update(WebhookDelivery)
                .where(WebhookDelivery.id == delivery_id)
                .values(next_attempt_at=utcnow() - timedelta(minutes=3))
            )
        await sweep_overdue_deliveries(database)

        with worker(database_url, master_keys, tmp_path):
            wait_until(lambda: len([r for r in receiver.verified() if r.answered == 200]) >= 1)

            async def done() -> bool:
                shown = await delivery(client, tenant, endpoint["id"], delivery_id)
                return bool(shown["status"] == "succeeded")

            deadline = time.monotonic() + 30
            while not await done():
                assert time.monotonic() < deadline
                time.sleep(0.1)

        final = await delivery(client, tenant, endpoint["id"], delivery_id)
        assert final["attempt_count"] == 2
        assert [a["succeeded"] for a in final["attempts"]] == [True]
        # Sent twice at most: the one cut off by the kill and the one after the restart.
        assert receiver.arrivals.count(webhook_id) == 2
