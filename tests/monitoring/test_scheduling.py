"""The schedule with several workers: each gateway checked once per interval, a worker killed
mid-round loses no check that was due, and real Procrastinate workers run it all."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta

import httpx
from sqlalchemy import func, select

from paygate.db import Database
from paygate.jobs import build_job_app
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.monitoring import checks
from paygate.monitoring.models import GatewayMonitor, HealthCheck
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.mail import Mailbox
from tests.gateways.helpers import sandbox_payload
from tests.monitoring.helpers import (
    add_recipient,
    checks_of,
    custom_payload,
    monitor_of,
    monitored_gateway,
    schedule_only,
)

MINUTE = timedelta(minutes=1)


async def test_two_workers_check_each_gateway_once_per_interval(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    intervals: dict[str, int] = {}
    for index, interval in enumerate((1, 1, 2, 2, 5, 5)):
        payload = custom_payload(custom_gateway_emulator, f"Custom {index}")
        intervals[await monitored_gateway(client, tenant, payload, interval=interval)] = interval
    for index, interval in enumerate((1, 3, 5)):
        payload = sandbox_payload(f"Sandbox {index}")
        intervals[await monitored_gateway(client, tenant, payload, interval=interval)] = interval
    t0 = utcnow()
    await schedule_only(database, settings, list(intervals), t0)
    # Small batches and a slow gateway, so the two workers' claims interleave.
    small = settings.model_copy(update={"monitoring_concurrency": 2})
    custom_gateway_emulator.knobs.delay_seconds = 0.05
    other = Database(database.url)
    try:
        for minute in range(10):
            at = t0 + minute * MINUTE
            first, second = await asyncio.gather(
                checks.run_round(database, keyring, small, now=at),
                checks.run_round(other, keyring, small, now=at),
            )
            assert first.superseded == second.superseded == 0
    finally:
        await other.dispose()
    for gateway_id, interval in intervals.items():
        assert await checks_of(database, gateway_id) == math.ceil(10 / interval), interval
    # Every custom check was one real call to the gateway.
    custom = sum(math.ceil(10 / i) for i in (1, 1, 2, 2, 5, 5))
    health_calls = [r for r in custom_gateway_emulator.requests if r.path == "/health"]
    assert len(health_calls) == custom


# A worker process that runs one round and is killed while its checks hang.
_WORKER = """
import asyncio
from paygate.db import Database
from paygate.monitoring.checks import run_round
from paygate.security.crypto import Keyring
from paygate.settings import Settings

settings = Settings()
database = Database(settings.database_url)
asyncio.run(run_round(database, Keyring.parse(settings.master_keys_text()), settings))
"""


async def test_a_worker_killed_mid_round_loses_no_due_check(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    custom_gateway_emulator: CustomGatewayEmulator,
) -> None:
    ids = [
        await monitored_gateway(client, tenant, custom_payload(custom_gateway_emulator, f"C{i}"))
        for i in range(4)
    ]
    t0 = utcnow()
    await schedule_only(database, settings, ids, t0)
    custom_gateway_emulator.knobs.delay_seconds = 8  # the worker's checks hang
    assert settings.database_url is not None
    env = {
        **os.environ,
        "PAYGATE_MODE": "test",
        "PAYGATE_DATABASE_URL": settings.database_url,
        "PAYGATE_MASTER_KEYS": settings.master_keys_text(),
        "PAYGATE_GATEWAY_TIMEOUT_SECONDS": "60",
        "PAYGATE_DATA_DIR": str(settings.data_dir),
    }
    worker = subprocess.Popen(
        [sys.executable, "-c", _WORKER],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            claimed = [(await monitor_of(database, i)).claim_token for i in ids]
            if all(claimed) and len(custom_gateway_emulator.requests) >= len(ids):
                break
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("the worker did not claim the checks")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(timeout=10)
    assert worker.returncode == -signal.SIGKILL

    # Nothing was recorded and nothing moved on: the slots are still due, under the lease.
    leases = []
    for gateway_id in ids:
        monitor = await monitor_of(database, gateway_id)
        assert monitor.next_check_at == t0
        assert monitor.claimed_until is not None
        leases.append(monitor.claimed_until)
        assert await checks_of(database, gateway_id) == 0
    custom_gateway_emulator.knobs.reset()
    held = await checks.run_round(database, keyring, settings, now=utcnow())
    assert held.claimed == 0  # another round leaves leased checks alone meanwhile

    # Once the dead worker's lease has run out, the next round checks every one of them.
    later = max(leases) + timedelta(seconds=1)
    report = await checks.run_round(database, keyring, settings, now=later)
    assert report.recorded == len(ids)
    for gateway_id in ids:
        assert await checks_of(database, gateway_id) == 1
        assert (await monitor_of(database, gateway_id)).status == "up"


async def test_real_workers_check_once_and_mail_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    jobs: JobContext,
    custom_gateway_emulator: CustomGatewayEmulator,
    mailbox: Mailbox,
) -> None:
    """Two Procrastinate workers on the monitoring queue: the round runs once, each gateway
    gets one check, each down alert one mail."""
    ids = [
        await monitored_gateway(
            client,
            tenant,
            custom_payload(custom_gateway_emulator, f"W{i}"),
            interval=5,  # not due again while the test runs, whatever minute it is
            threshold=1,
        )
        for i in range(3)
    ]
    await add_recipient(client, tenant, "workers@acme.example", ["gateway_down"])
    await schedule_only(database, settings, ids, utcnow() - MINUTE)
    custom_gateway_emulator.knobs.fail_status = 503
    assert settings.database_url is not None
    # One app (build_job_app namespaces the module-level blueprints, so a process builds it
    # once), two workers: each fetches jobs on its own, as two worker processes would.
    app = build_job_app(settings.database_url)
    workers = []
    async with app.open_async():
        for _ in range(2):
            workers.append(
                asyncio.create_task(
                    app.run_worker_async(
                        install_signal_handlers=False, queues=["monitoring"], concurrency=2
                    )
                )
            )
        # The minute's tick, as the periodic schedule defers it (once, whoever runs it).
        await app.configure_task("monitoring:run_health_checks").defer_async(
            timestamp=int(time.time())
        )
        try:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                if len(mailbox.to("workers@acme.example")) >= len(ids) and all(
                    [await checks_of(database, i) for i in ids]
                ):
                    break
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.5)  # room for a duplicate to show up, if there were one
        finally:
            for task in workers:
                task.cancel()
            for task in workers:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    assert [await checks_of(database, i) for i in ids] == [1, 1, 1]
    async with database.transaction() as session:
        down = await session.execute(
            select(func.count())
            .select_from(GatewayMonitor)
            .where(GatewayMonitor.gateway_id.in_(ids), GatewayMonitor.status == "down")
        )
        assert down.scalar_one() == 3
        assert (
            await session.execute(
                select(func.count()).where(HealthCheck.gateway_id.in_(ids), HealthCheck.ok)
            )
        ).scalar_one() == 0
    # One alert per incident: three gateways down, three mails, none twice.
    subjects = sorted(m["Subject"] for m in mailbox.to("workers@acme.example"))
    assert subjects == [f"paygate: W{i} is down" for i in range(3)]
