"""Health-check benchmark: one round of scheduled checks over many gateways.

Self-contained and bounded. It:
  1. creates its own database (dropped at the end) and migrates it;
  2. starts a custom-gateway emulator in a subprocess on 127.0.0.1 whose /health answers
     after --latency-ms (default 50 ms), so its CPU is not counted as paygate's;
  3. inserts one company and --gateways custom gateways (default 10,000) aimed at it, with
     their secrets sealed as paygate seals them, and makes every one of them due now;
  4. runs `monitoring.checks.run_round` in this process (as a worker would) with
     --concurrency checks at once, and reports the round's wall time, this process's CPU
     time (per check, and as a share of one core), the PostgreSQL backends' CPU (read by
     a watcher process), how busy the whole machine was, and checks per second.

Targets (issue 12): the round within 60 s, using at most a third of one core: for 10,000
gateways, at most 20 s of CPU (2 ms per check). On a shared machine others stretch the
wall time, and with it the share of a core: the CPU per check is the figure to compare.

Run: .venv/bin/python bench/health.py [--gateways 10000] [--concurrency 100]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from alembic import command  # noqa: E402
from sqlalchemy import text  # noqa: E402

from paygate.db import Database  # noqa: E402
from paygate.gateways.credentials import Envelope  # noqa: E402
from paygate.gateways.models import Gateway  # noqa: E402
from paygate.kit.clock import utcnow  # noqa: E402
from paygate.kit.ids import new_id  # noqa: E402
from paygate.kit.logging import configure_logging  # noqa: E402
from paygate.migrations_check import alembic_config  # noqa: E402
from paygate.monitoring import checks  # noqa: E402
from paygate.monitoring.system_repository import ensure_monitors  # noqa: E402
from paygate.security.crypto import Keyring, generate_master_key  # noqa: E402
from paygate.settings import Mode, Settings  # noqa: E402

HOST = "127.0.0.1"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
API_KEY = "cgw_bench_key_5f1c0e9a7b3d4c2e8a6f"
HARD_DEADLINE_SECONDS = 600
# A third of one core over a 60 s round of 10,000 checks: 20 s, 2 ms per check.
TARGET_CPU_PER_CHECK_S = 60 / 3 / 10_000

# The emulator: /health answers {"status": "ok"} after a fixed delay (a plain ASGI app).
_EMULATOR = """
import asyncio, socket, sys, uvicorn
delay = float(sys.argv[2]) / 1000

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await asyncio.sleep(delay)
    body = b'{"status":"ok","version":"1"}'
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})

sock = socket.socket(fileno=int(sys.argv[1]))
config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off",
                        backlog=4096, limit_concurrency=10000)
uvicorn.Server(config).run(sockets=[sock])
"""


def database_url(admin_url: str, name: str) -> str:
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path=f"/{name}"))


# Watches the bench database's backends from a process of its own (its CPU is not the
# worker's): every --pg-poll seconds it lists their pids and reads their CPU from /proc.
# A backend that ends mid-round (the pool closes an overflow connection when it comes
# back) counts up to its last reading, and one born and gone between two readings not at
# all: that figure is a floor. The ceiling adds, instead of those, all the CPU of every
# PostgreSQL process that ended during the round (the postmaster's reaped children: other
# databases' too). Reading only the backends alive at the end, as this bench first did,
# missed nearly all of the per-check transactions' CPU.
_PG_WATCH = """
import json, os, select, sys, psycopg
admin_url, name, poll = sys.argv[1], sys.argv[2], float(sys.argv[3])
ticks = os.sysconf("SC_CLK_TCK")
first, last, alive = {}, {}, set()

def stat(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None  # another host's PostgreSQL, or the process is gone

def sample(conn, start):
    global alive
    rows = conn.execute("SELECT pid FROM pg_stat_activity WHERE datname = %s", (name,))
    alive = set()
    for (pid,) in rows:
        fields = stat(pid)
        if fields is not None:
            used = (int(fields[11]) + int(fields[12])) / ticks
            # Alive before the round: only what it uses from now on counts.
            first.setdefault(pid, used if start else 0.0)
            last[pid] = used
            alive.add(pid)

def reaped(conn):
    pid = conn.execute("SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    fields = stat(stat(pid.fetchone()[0])[1])  # the checkpointer's parent: the postmaster
    return (int(fields[13]) + int(fields[14])) / ticks

with psycopg.connect(admin_url, autocommit=True) as conn:
    sample(conn, True)
    reaped0 = reaped(conn)
    print("ready", flush=True)
    while not select.select([sys.stdin], [], [], poll)[0]:
        sample(conn, False)
    sample(conn, False)
    ceiling = sum(last[p] - first[p] for p in alive) + reaped(conn) - reaped0
print(json.dumps({"cpu_s": sum(last[p] - first[p] for p in last), "ceiling_s": ceiling,
                  "backends": len(last), "ended": len(set(last) - alive)}), flush=True)
"""


class PostgresWatch:
    """CPU of the bench database's backends over the round, from a watcher subprocess."""

    def __init__(self, admin_url: str, name: str, poll: float) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", _PG_WATCH, admin_url, name, str(poll)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            raise RuntimeError("the PostgreSQL watcher did not start")

    def stop(self) -> dict[str, float]:
        out, _ = self.process.communicate("stop\n", timeout=30)
        found: dict[str, float] = json.loads(out)
        return found


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, every CPU."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


async def seed(database: Database, keyring: Keyring, base_url: str, count: int) -> list[str]:
    company_id = new_id("cmp")
    ids: list[str] = []
    async with database.transaction() as session:
        await session.execute(
            text("INSERT INTO companies (id, name) VALUES (:id, 'Bench Co')"), {"id": company_id}
        )
        for index in range(count):
            gateway = Gateway(
                id=new_id("gw"),
                company_id=company_id,
                name=f"Custom {index}",
                gateway_type="custom",
                environment="test",
                enabled=True,
                public_config={"base_url": base_url},
                secret_hints={},
                supported_currencies=["USD"],
                priority=100,
                payment_method_types=["card"],
            )
            sealed = keyring.seal(Envelope({"api_key": API_KEY}, {}).plaintext(), gateway.aad())
            gateway.key_id = sealed.key_id
            gateway.wrapped_data_key = sealed.wrapped_data_key
            gateway.secret_ciphertext = sealed.ciphertext
            session.add(gateway)
            ids.append(gateway.id)
    return ids


async def run(args: argparse.Namespace, url: str, base_url: str, name: str) -> dict[str, float]:
    master = generate_master_key("bench")
    settings = Settings(
        mode=Mode.TEST,  # test gateways may reach the emulator on 127.0.0.1
        database_url=url,
        master_keys=master,  # type: ignore[arg-type]
        run_worker=False,
        log_level="WARNING",
        monitoring_concurrency=args.concurrency,
        monitoring_round_seconds=300,  # the most allowed: the round must end by itself
    )
    keyring = Keyring.parse(settings.master_keys_text())
    database = Database(url)
    try:
        ids = await seed(database, keyring, base_url, args.gateways)
        now = utcnow()
        async with database.transaction() as session:
            await ensure_monitors(session, now, 5, 2)
            await session.execute(
                text("UPDATE gateway_monitors SET next_check_at = :now"), {"now": now}
            )
            await session.execute(text("ANALYZE"))
        watch = PostgresWatch(args.admin_url, name, args.pg_poll)
        busy0 = machine_busy()
        cpu0, wall0 = time.process_time(), time.perf_counter()
        report = await checks.run_round(database, keyring, settings)
        wall = time.perf_counter() - wall0
        cpu = time.process_time() - cpu0
        busy1 = machine_busy()
        pg = watch.stop()
        async with database.transaction() as session:
            recorded = (
                await session.execute(text("SELECT count(*) FROM health_checks"))
            ).scalar_one()
            up = (
                await session.execute(
                    text("SELECT count(*) FROM gateway_monitors WHERE status = 'up'")
                )
            ).scalar_one()
    finally:
        await database.dispose()
    return {
        "gateways": len(ids),
        "claimed": report.claimed,
        "recorded": recorded,
        "up": up,
        "wall_s": wall,
        "cpu_s": cpu,
        "machine_busy": (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1]),
        "pg_s": pg["cpu_s"],
        "pg_ceiling_s": pg["ceiling_s"],
        "pg_backends": pg["backends"],
        "pg_ended": pg["ended"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--gateways", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument(
        "--pg-poll", type=float, default=0.05, help="seconds between PostgreSQL CPU readings"
    )
    parser.add_argument(
        "--admin-url", default=os.environ.get("PAYGATE_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL)
    )
    args = parser.parse_args()
    # One log line per gateway call would cost more than the round itself.
    configure_logging(json_logs=False, level="WARNING")
    name = f"paygate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(args.admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((HOST, 0))
    sock.listen(4096)
    base_url = f"http://{HOST}:{sock.getsockname()[1]}"
    emulator = subprocess.Popen(
        [sys.executable, "-c", _EMULATOR, str(sock.fileno()), str(args.latency_ms)],
        pass_fds=(sock.fileno(),),
    )
    sock.close()
    try:
        for _ in range(100):
            try:
                httpx.get(f"{base_url}/health", timeout=1)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        url = database_url(args.admin_url, name)
        command.upgrade(alembic_config(url), "head")
        result = asyncio.run(
            asyncio.wait_for(run(args, url, base_url, name), HARD_DEADLINE_SECONDS)
        )
    finally:
        emulator.terminate()
        emulator.wait(timeout=10)
        with psycopg.connect(args.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    wall, pg, cpu = result["wall_s"], result["pg_s"], result["cpu_s"]
    recorded = result["recorded"]
    budget = result["gateways"] * TARGET_CPU_PER_CHECK_S
    print(f"gateways             {result['gateways']:>10,.0f}")
    print(f"checks recorded      {recorded:>10,.0f}  (up: {result['up']:,.0f})")
    print(f"round wall time      {wall:>10.1f} s   (target <= 60 s)")
    print(f"checks per second    {recorded / wall:>10.0f}")
    print(
        f"worker CPU           {cpu:>10.1f} s = {cpu / max(1, recorded) * 1000:.2f} ms per check"
        f" (target <= {budget:.0f} s: a third of one core over 60 s)"
    )
    print(f"  share of one core  {cpu / wall:>10.2f}   over the measured wall time")
    print(
        f"PostgreSQL CPU       {pg:>10.1f} s = {pg / max(1, recorded) * 1000:.2f} ms per check"
        f" = {pg / wall:.2f} core (backends of this database)"
    )
    ceiling = result["pg_ceiling_s"]
    print(
        f"PostgreSQL backends  {result['pg_backends']:>10,.0f}  ({result['pg_ended']:,.0f} ended"
        f" mid-round; with every PostgreSQL process that ended meanwhile: {ceiling:.1f} s)"
    )
    cpus = os.cpu_count() or 1
    print(
        f"machine busy         {result['machine_busy'] * 100:>9.0f}%  of {cpus} CPUs"
        " (near 100%: others shared the machine, the wall time suffered)"
    )


if __name__ == "__main__":
    main()
