"""Payments benchmark: API payments through a running paygate, on PostgreSQL.

Self-contained and bounded. For each uvicorn worker count asked for (default 1 and 2) it:
  1. creates its own database (dropped at the end), starts `paygate serve` as a subprocess
     in production mode (JWT secret and master key generated on the fly, no job worker,
     log level WARNING) and localstripe on 127.0.0.1;
  2. registers a company (and a second one, as every scenario keeps), creates an API key
     with the payments and invoices scopes, a sandbox gateway and a Stripe gateway aimed at
     localstripe, seeds invoices (SQL copies of one invoice made through the API), warms up,
     then ANALYZEs;
  3. sandbox throughput: N concurrent keep-alive clients (wrk + Lua when installed, else
     httpx) pay distinct invoices with POST /api/v1/invoices/{id}/payments and a fresh
     Idempotency-Key for a fixed duration: payments/s, p50, p99, and the CPU each party used;
  4. sandbox latency at concurrency 1 (the whole cost paygate adds when the gateway costs 0);
  5. Stripe added latency: at concurrency 1, A (a payment through paygate against
     localstripe, pm_card_visa) interleaved with B (the same PaymentIntent create+confirm
     made directly with stripe.StripeClient): p50/p99 of A, B and A-B;
  6. peak memory (VmHWM) of the server processes, summed over uvicorn's processes.

Run: .venv/bin/python bench/payments.py   (see bench/README.md for options and reading)
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # tests.fakes.servers (localstripe)
sys.path.insert(0, str(ROOT / "src"))  # this checkout's paygate, as its servers run

from paygate.kit.ids import new_id  # noqa: E402

HOST = "127.0.0.1"
SUCCESS_CARD = "4242424242424242"
DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
PAYGATE = str(Path(sys.executable).parent / "paygate")
HARD_DEADLINE_SECONDS = 600  # the whole run, whatever the options


# --- small helpers -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[index]


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))


def children_of(pid: int) -> list[int]:
    """Every descendant of `pid` (uvicorn's worker processes)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime + stime


def vm_hwm_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of the whole machine."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (the server's pooled connections)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if f" {database} " in f" {_cmdline(int(entry.name))} ":
                    pids.append(int(entry.name))
            except OSError:
                pass
    return pids


class CpuMeter:
    """CPU seconds used by groups of processes (and the machine) between start and stop."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.before = {name: {p: cpu_seconds(p) for p in pids} for name, pids in groups.items()}
        self.machine_before = machine_busy()
        self.started = time.perf_counter()

    def stop(self) -> dict[str, Any]:
        elapsed = time.perf_counter() - self.started
        used: dict[str, Any] = {}
        for name, pids in self.groups.items():
            # A process gone meanwhile reads 0: count it as nothing rather than negative.
            per = {p: max(0.0, cpu_seconds(p) - self.before[name].get(p, 0.0)) for p in pids}
            used[name] = {"cpu_s": sum(per.values()), "per_process": per}
        busy0, total0 = self.machine_before
        busy1, total1 = machine_busy()
        used["machine_busy_fraction"] = (busy1 - busy0) / max(1, total1 - total0)
        used["elapsed_s"] = elapsed
        return used


# --- database and processes --------------------------------------------------------------


@contextmanager
def bench_database(admin_url: str) -> Iterator[str]:
    name = f"paygate_bench_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(admin_url, name)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def paygate_env(database_url: str, port: int) -> dict[str, str]:
    """The environment of a bench's paygate processes (server and job worker alike: they
    share the master key that seals the gateways' secrets)."""
    master = base64.b64encode(secrets.token_bytes(32)).decode()
    inherited = os.environ.get("PYTHONPATH")
    return {
        **os.environ,
        # This checkout's code, whichever paygate the venv was installed from.
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "src"), inherited])),
        "PAYGATE_MODE": "production",
        "PAYGATE_DATABASE_URL": database_url,
        "PAYGATE_JWT_SECRET": secrets.token_urlsafe(48),
        "PAYGATE_MASTER_KEYS": f"bench-{secrets.token_hex(3)}:{master}",
        "PAYGATE_RUN_WORKER": "false",
        "PAYGATE_LOG_LEVEL": "WARNING",
        "PAYGATE_HOST": HOST,
        "PAYGATE_PORT": str(port),
        "PAYGATE_PUBLIC_URL": f"http://{HOST}:{port}",
        # Production mode, but its Stripe test gateway is aimed at localstripe on 127.0.0.1.
        "PAYGATE_TEST_GATEWAYS_REACH_PRIVATE_ADDRESSES": "true",
    }


@contextmanager
def paygate_server(
    database_url: str, workers: int, log: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[str, int]]:
    """`paygate serve --workers N` (no job worker) on `env`'s port; (base URL, pid)."""
    env = env or paygate_env(database_url, free_port())
    port = int(env["PAYGATE_PORT"])
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PAYGATE, "serve", "--workers", str(workers)],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        base = f"http://{HOST}:{port}"
        try:
            wait_until_ready(process, f"{base}/readyz", log)
            if workers > 1:  # every worker answers before we measure
                time.sleep(1.0)
            yield base, process.pid
        finally:
            stop_process_group(process)


@contextmanager
def paygate_worker(env: dict[str, str], concurrency: int, log: Path) -> Iterator[int]:
    """`paygate worker` on the server's environment (start it once the server has
    migrated the database); yields its pid."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            [PAYGATE, "worker", "--concurrency", str(concurrency)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        try:
            time.sleep(1.0)
            if process.poll() is not None:
                raise RuntimeError(f"worker exited: {log.read_text()[-3000:]}")
            yield process.pid
        finally:
            stop_process_group(process)


@contextmanager
def floor_server(database_url: str, workers: int, log: Path) -> Iterator[tuple[str, int]]:
    """bench/floor_app.py on the same database, pool size and worker count as paygate."""
    port = free_port()
    env = {**os.environ, "FLOOR_DATABASE_URL": database_url}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "bench" / "floor_app.py"), "--port", str(port),
             "--workers", str(workers)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        base = f"http://{HOST}:{port}"
        try:
            wait_until_ready(process, f"{base}/healthz", log)
            time.sleep(1.0)  # every worker answers before we measure
            yield base, process.pid
        finally:
            stop_process_group(process)


def wait_until_ready(
    process: subprocess.Popen[bytes], url: str, log: Path, *, any_status: bool = False
) -> None:
    """Until `url` answers 200 (`any_status`: answers at all, e.g. an emulator set to fail)."""
    deadline = time.monotonic() + 60
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"server exited: {log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code == 200 or any_status:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"server did not start: {log.read_text()[-3000:]}")
        time.sleep(0.2)


def stop_process_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=5)


def vm_rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def server_pids(root: int) -> list[int]:
    return [root, *children_of(root)]


def worker_pids(root: int) -> list[int]:
    """The processes that serve requests (uvicorn's supervisor does not)."""
    kids = children_of(root)
    # With --workers N, uvicorn spawns N workers (plus multiprocessing's resource tracker).
    busy = [p for p in kids if "resource_tracker" not in _cmdline(p)]
    return busy or [root]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


# --- setting up a company ----------------------------------------------------------------


@dataclass
class Setup:
    base: str
    api_key: str
    sandbox_gateway: str
    stripe_gateway: str
    template_invoice: str
    invoices: list[str] = field(default_factory=list)
    owner_headers: dict[str, str] = field(default_factory=dict)  # the owner's session

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"}


def register(client: httpx.Client, company: str) -> dict[str, str]:
    password = "Bench-" + secrets.token_urlsafe(18)
    email = f"owner-{secrets.token_hex(4)}@bench.example.com"
    answer = client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": password, "company_name": company},
    )
    answer.raise_for_status()
    return {"Authorization": f"Bearer {answer.json()['access_token']}"}


def stripe_gateway(
    client: httpx.Client,
    owner: dict[str, str],
    api_base_url: str,
    webhook_secret: str,
    *,
    name: str,
) -> str:
    """A Stripe test gateway made through the API (its secrets sealed by paygate); its id."""
    gateway = client.post(
        "/api/v1/gateways",
        headers=owner,
        json={
            "name": name,
            "gateway_type": "stripe",
            "environment": "test",
            "configuration": {
                "secret_key": "sk_test_" + secrets.token_hex(12),
                "publishable_key": "pk_test_" + secrets.token_hex(12),
                "webhook_secret": webhook_secret,
                "api_base_url": api_base_url,
            },
            "supported_currencies": ["USD"],
            "priority": 200,
        },
    )
    gateway.raise_for_status()
    return str(gateway.json()["id"])


def set_up(base: str, localstripe: str | None) -> Setup:
    with httpx.Client(base_url=base, timeout=30) as client:
        owner = register(client, "Bench Invoicing")
        register(client, "Other Company")  # a second tenant, as every scenario keeps
        key = client.post(
            "/api/v1/api-keys",
            headers=owner,
            json={
                "name": "bench",
                "scopes": ["payments:read", "payments:write", "invoices:read", "invoices:write"],
            },
        )
        key.raise_for_status()
        sandbox = client.post(
            "/api/v1/gateways",
            headers=owner,
            json={"name": "Sandbox", "gateway_type": "sandbox", "supported_currencies": ["USD"]},
        )
        sandbox.raise_for_status()
        stripe_id = ""
        if localstripe:
            stripe_id = stripe_gateway(
                client, owner, localstripe, "whsec_" + "a" * 32, name="Stripe (localstripe)"
            )
        setup = Setup(base, key.json()["key"], sandbox.json()["id"], stripe_id, "")
        setup.owner_headers = owner
        invoice = client.post(
            "/api/v1/invoices",
            headers=setup.headers,
            json={
                "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
                "currency": "USD",
                "line_items": [{"description": "Consulting", "quantity": 1, "unit_amount": 12_500}],
            },
        )
        invoice.raise_for_status()
        setup.template_invoice = invoice.json()["id"]
    return setup


def seed_invoices(database_url: str, template: str, count: int, prefix: str = "BENCH") -> list[str]:
    """`count` open invoices copied from one the API made (ids made the way paygate does),
    numbered `prefix`-0000000 on."""
    ids = [new_id("inv") for _ in range(count)]
    numbers = [f"{prefix}-{i:07d}" for i in range(count)]
    tokens = [secrets.token_urlsafe(32) for _ in range(count)]
    line_ids = [new_id("li") for _ in range(count)]
    with psycopg.connect(database_url) as conn:
        columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'invoices' ORDER BY ordinal_position"
            )
        ]
        fresh = {"id": "n.id", "number": "n.number", "pay_token": "n.token"}
        select_list = ", ".join(fresh.get(c, f"t.{c}") for c in columns)
        conn.execute(
            f"INSERT INTO invoices ({', '.join(columns)}) SELECT {select_list}"
            " FROM invoices t, unnest(%s::text[], %s::text[], %s::text[]) AS n(id, number, token)"
            " WHERE t.id = %s",
            (ids, numbers, tokens, template),
        )
        line_columns = [
            row[0]
            for row in conn.execute(
                "SELECT column_name FROM information_schema.columns"
                " WHERE table_name = 'invoice_lines' ORDER BY ordinal_position"
            )
        ]
        fresh = {"id": "n.line_id", "invoice_id": "n.invoice_id"}
        select_list = ", ".join(fresh.get(c, f"l.{c}") for c in line_columns)
        conn.execute(
            f"INSERT INTO invoice_lines ({', '.join(line_columns)}) SELECT {select_list}"
            " FROM invoice_lines l, unnest(%s::text[], %s::text[]) AS n(line_id, invoice_id)"
            " WHERE l.invoice_id = %s",
            (line_ids, ids, template),
        )
    analyze(database_url)
    return ids


def analyze(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("ANALYZE")


# --- load: wrk + Lua, or httpx -------------------------------------------------------------

# The part of the wrk script every workload shares: each wrk thread takes its share of the
# items (one a line of BENCH_ITEMS), and `make_request(item)` / `classify(status, body)`,
# given by the workload, build a request and name its answer. Out of items, a thread asks
# for /healthz (counted as exhausted) or, with BENCH_WRAP=1, starts its items again.
WRK_LUA = r"""
local items_file = os.getenv("BENCH_ITEMS")
local nthreads = tonumber(os.getenv("BENCH_THREADS"))
local wrap = os.getenv("BENCH_WRAP") == "1"
local threads = {}
local counter = 0

function setup(thread)
  counter = counter + 1
  thread:set("index", counter)
  table.insert(threads, thread)
end

function init(args)
  items = {}
  local n = 0
  for line in io.lines(items_file) do
    n = n + 1
    if (n % nthreads) == (index - 1) then table.insert(items, line) end
  end
  next_item = 1
  statuses = {}
  exhausted = 0
end

function request()
  local item = items[next_item]
  if item == nil and wrap and #items > 0 then
    next_item = 1
    item = items[1]
  end
  if item == nil then
    exhausted = exhausted + 1
    return wrk.format("GET", "/healthz")
  end
  next_item = next_item + 1
  return make_request(item)
end

function response(status, headers, body)
  local key = classify(status, body)
  statuses[key] = (statuses[key] or 0) + 1
end

function done(summary, latency, requests)
  local merged = {}
  local exhausted_total = 0
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for k, v in pairs(s) do merged[k] = (merged[k] or 0) + v end
    exhausted_total = exhausted_total + t:get("exhausted")
  end
  local parts = {}
  for k, v in pairs(merged) do table.insert(parts, '"' .. k .. '":' .. v) end
  io.write("BENCH_JSON {")
  io.write('"requests":' .. summary.requests .. ',')
  io.write('"duration_us":' .. summary.duration .. ',')
  io.write('"errors_connect":' .. summary.errors.connect .. ',')
  io.write('"errors_read":' .. summary.errors.read .. ',')
  io.write('"errors_timeout":' .. summary.errors.timeout .. ',')
  io.write('"errors_status":' .. summary.errors.status .. ',')
  io.write('"exhausted":' .. exhausted_total .. ',')
  io.write('"p50_us":' .. latency:percentile(50) .. ',')
  io.write('"p90_us":' .. latency:percentile(90) .. ',')
  io.write('"p99_us":' .. latency:percentile(99) .. ',')
  io.write('"max_us":' .. latency.max .. ',')
  io.write('"statuses":{' .. table.concat(parts, ",") .. '}}\n')
end
"""

# A payment per item (an invoice id): POST {prefix}{id}/payments with a fresh key.
PAYMENT_LUA = r"""
local headers_auth = os.getenv("BENCH_AUTH")
local body = os.getenv("BENCH_BODY")
local path_prefix = os.getenv("BENCH_PATH_PREFIX")

function make_request(id)
  return wrk.format("POST", path_prefix .. id .. "/payments", {
    ["Authorization"] = headers_auth,
    ["Content-Type"] = "application/json",
    ["Idempotency-Key"] = "bench-" .. index .. "-" .. next_item .. "-" .. id,
  }, body)
end

function classify(status, body)
  return tostring(status)
end
"""


PAYGATE_PATH = "/api/v1/invoices/"
FLOOR_PATH = "/floor/invoices/"


@dataclass(frozen=True)
class Target:
    """Where the load goes: paygate's payments endpoint, or the floor app's; `body`: the
    payment's JSON (None: the sandbox gateway named, with the success card)."""

    base: str
    path_prefix: str
    body: str | None = None

    def body_for(self, setup: Setup) -> str:
        return self.body or payment_body(setup.sandbox_gateway)


@dataclass(frozen=True)
class Workload:
    """One request per item, the same for wrk (Lua) and httpx (Python).

    `lua` defines `make_request(item)` and `classify(status, body)`, reading `env`;
    `build(item)` and `classify(status, body)` are the same in Python. `ok` is the class of
    a successful answer. `wrap`: start the items again when they run out."""

    base: str
    lua: str
    env: dict[str, str]
    build: Callable[[str], tuple[str, dict[str, str], bytes]]
    classify: Callable[[int, bytes], str]
    ok: str
    wrap: bool = False


@dataclass
class LoadResult:
    ok: int  # answers of the workload's `ok` class (201 for payments)
    seconds: float
    p50_ms: float
    p99_ms: float
    statuses: dict[str, int]
    loadgen_cpu_s: float
    cpu: dict[str, Any]

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0


def payment_body(gateway_id: str, method: str = SUCCESS_CARD) -> str:
    return json.dumps({"gateway_id": gateway_id, "payment_method": method})


def payment_workload(setup: Setup, target: Target | None = None) -> Workload:
    target = target or Target(setup.base, PAYGATE_PATH)
    body = target.body_for(setup)

    def build(invoice: str) -> tuple[str, dict[str, str], bytes]:
        headers = {
            **setup.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": secrets.token_hex(12),
        }
        return f"{target.path_prefix}{invoice}/payments", headers, body.encode()

    return Workload(
        base=target.base,
        lua=PAYMENT_LUA,
        env={
            "BENCH_AUTH": setup.headers["Authorization"],
            "BENCH_BODY": body,
            "BENCH_PATH_PREFIX": target.path_prefix,
        },
        build=build,
        classify=lambda status, _: str(status),
        ok="201",
    )


def wrk_load(
    workload: Workload,
    items: list[str],
    clients: int,
    seconds: float,
    groups: dict[str, list[int]],
) -> LoadResult:
    """wrk (one thread) for `seconds` with `clients` keep-alive connections, one request
    per item; the CPU each group of processes used meanwhile."""
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "load.lua"
        script.write_text(WRK_LUA + workload.lua)
        item_file = Path(tmp) / "items.txt"
        item_file.write_text("\n".join(items) + "\n")
        env = {
            **os.environ,
            **workload.env,
            "BENCH_ITEMS": str(item_file),
            "BENCH_THREADS": "1",
            "BENCH_WRAP": "1" if workload.wrap else "0",
        }
        command = [
            "wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "10s",
            "-s", str(script), workload.base,
        ]  # fmt: skip
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        meter = CpuMeter({**groups, "loadgen": [process.pid]})
        # CPU of an exited process cannot be read: sample it just before it ends.
        loadgen_cpu = 0.0
        deadline = time.monotonic() + seconds + 30
        while process.poll() is None and time.monotonic() < deadline:
            loadgen_cpu = max(loadgen_cpu, cpu_seconds(process.pid))
            time.sleep(0.05)
        out, _ = process.communicate(timeout=30)
        used = meter.stop()
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary:\n{out}")
    data = json.loads(line[len("BENCH_JSON ") :])
    statuses = {str(k): int(v) for k, v in data["statuses"].items()}
    used["loadgen"]["cpu_s"] = loadgen_cpu
    if data["exhausted"]:
        statuses["(ran out of items)"] = data["exhausted"]
    return LoadResult(
        ok=statuses.get(workload.ok, 0),
        seconds=data["duration_us"] / 1e6,
        p50_ms=data["p50_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
        statuses=statuses,
        loadgen_cpu_s=loadgen_cpu,
        cpu=used,
    )


async def _httpx_load(
    workload: Workload, items: list[str], clients: int, seconds: float
) -> tuple[list[float], dict[str, int], float]:
    queue = list(reversed(items))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=workload.base, limits=limits, timeout=10) as client:
        started = time.perf_counter()
        stop_at = started + seconds
        position = 0

        def next_item() -> str | None:
            nonlocal position
            if queue:
                return queue.pop()
            if workload.wrap and items:
                position += 1
                return items[position % len(items)]
            return None

        async def one_client() -> None:
            while time.perf_counter() < stop_at and (item := next_item()) is not None:
                path, headers, body = workload.build(item)
                t0 = time.perf_counter()
                answer = await client.post(path, content=body, headers=headers)
                latencies.append(time.perf_counter() - t0)
                key = workload.classify(answer.status_code, answer.content)
                statuses[key] = statuses.get(key, 0) + 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        return latencies, statuses, time.perf_counter() - started


def httpx_load(
    workload: Workload,
    items: list[str],
    clients: int,
    seconds: float,
    groups: dict[str, list[int]],
) -> LoadResult:
    """The same as wrk_load with asyncio httpx clients in this process (no wrk installed)."""
    meter = CpuMeter({**groups, "loadgen": [os.getpid()]})
    latencies, statuses, elapsed = asyncio.run(_httpx_load(workload, items, clients, seconds))
    used = meter.stop()
    return LoadResult(
        ok=statuses.get(workload.ok, 0),
        seconds=elapsed,
        p50_ms=pct(latencies, 50) * 1000,
        p99_ms=pct(latencies, 99) * 1000,
        statuses=statuses,
        loadgen_cpu_s=used["loadgen"]["cpu_s"],
        cpu=used,
    )


def use_wrk(choice: str) -> bool:
    """--loadgen: wrk when asked, or (auto) when installed; else httpx."""
    return choice == "wrk" or (choice == "auto" and shutil.which("wrk") is not None)


PaymentRun = Callable[..., LoadResult]


def payment_runner(wrk: bool) -> PaymentRun:
    """run(setup, invoice ids, clients, seconds, groups, target=None): payments, one per
    invoice, through wrk or httpx."""
    load = wrk_load if wrk else httpx_load

    def run(
        setup: Setup,
        ids: list[str],
        clients: int,
        seconds: float,
        groups: dict[str, list[int]],
        target: Target | None = None,
    ) -> LoadResult:
        return load(payment_workload(setup, target), ids, clients, seconds, groups)

    return run


# --- latency at concurrency 1 ------------------------------------------------------------


async def post_payment(
    client: httpx.AsyncClient,
    setup: Setup,
    invoice: str,
    body: str,
    path_prefix: str = PAYGATE_PATH,
) -> tuple[float, httpx.Response]:
    """One payment of `invoice` with a fresh Idempotency-Key: (seconds, the answer)."""
    t0 = time.perf_counter()
    answer = await client.post(
        f"{path_prefix}{invoice}/payments",
        content=body,
        headers={
            **setup.headers,
            "Content-Type": "application/json",
            "Idempotency-Key": secrets.token_hex(12),
        },
    )
    return time.perf_counter() - t0, answer


async def sequential_sandbox(setup: Setup, ids: list[str]) -> list[float]:
    body = payment_body(setup.sandbox_gateway)
    latencies = []
    async with httpx.AsyncClient(base_url=setup.base, timeout=10) as client:
        for invoice in ids:
            elapsed, answer = await post_payment(client, setup, invoice, body)
            latencies.append(elapsed)
            if answer.status_code != 201:
                raise RuntimeError(f"sandbox payment answered {answer.status_code}: {answer.text}")
    return latencies


@dataclass
class StripeResult:
    a_ms: list[float]
    b_ms: list[float]
    skipped: str | None = None

    @property
    def diff_ms(self) -> list[float]:
        return [a - b for a, b in zip(self.a_ms, self.b_ms, strict=True)]


async def stripe_added_latency(
    setup: Setup, localstripe: str, ids: list[str], pairs: int, budget_s: float
) -> StripeResult:
    import stripe

    body = payment_body(setup.stripe_gateway, "pm_card_visa")
    stripe_http = stripe.HTTPXClient(timeout=10)
    direct = stripe.StripeClient(
        "sk_test_" + secrets.token_hex(12),
        base_addresses={"api": localstripe},
        http_client=stripe_http,
        max_network_retries=0,
    )

    async with httpx.AsyncClient(base_url=setup.base, timeout=30) as client:

        async def a(invoice: str) -> tuple[float, httpx.Response]:
            return await post_payment(client, setup, invoice, body)

        async def b(n: int) -> float:
            # What the Stripe adapter sends for a card payment, made directly.
            params: Any = {
                "amount": 12_500,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "confirm": True,
                "metadata": {"paygate_payment": f"direct_{n}", "paygate_attempt": f"d_{n}"},
                "payment_method_types": ["card"],
            }
            t0 = time.perf_counter()
            intent = await direct.v1.payment_intents.create_async(
                params, {"idempotency_key": f"direct-{n}-{secrets.token_hex(6)}"}
            )
            elapsed = time.perf_counter() - t0
            if intent.status != "succeeded":
                raise RuntimeError(f"direct PaymentIntent is {intent.status}")
            return elapsed

        try:
            # One of each first (warms both paths, and tells whether the adapter works yet).
            _, probe = await a(ids[0])
            if probe.status_code != 201 or probe.json().get("status") != "succeeded":
                return StripeResult(
                    [], [],
                    f"a Stripe payment through paygate answered {probe.status_code}: "
                    f"{probe.text[:400]}",
                )  # fmt: skip
            await b(-1)
            result = StripeResult([], [])
            stop_at = time.perf_counter() + budget_s
            for n, invoice in enumerate(ids[1 : pairs + 1]):
                if time.perf_counter() > stop_at:
                    break
                # ABBA order: neither side always runs first.
                if n % 2 == 0:
                    ta, answer = await a(invoice)
                    tb = await b(n)
                else:
                    tb = await b(n)
                    ta, answer = await a(invoice)
                if answer.status_code != 201 or answer.json().get("status") != "succeeded":
                    raise RuntimeError(
                        f"Stripe payment answered {answer.status_code}: {answer.text[:400]}"
                    )
                result.a_ms.append(ta * 1000)
                result.b_ms.append(tb * 1000)
            return result
        finally:
            await stripe_http.close_async()  # type: ignore[no-untyped-call]


# --- one configuration ---------------------------------------------------------------------


@dataclass
class ConfigResult:
    workers: int
    load: LoadResult | None = None
    sequential_ms: list[float] = field(default_factory=list)
    stripe: StripeResult | None = None
    memory_kib: dict[int, int] = field(default_factory=dict)
    worker_split: list[float] = field(default_factory=list)
    loadgen: str = ""
    many: LoadResult | None = None  # --many-clients per worker
    floor: LoadResult | None = None  # bench/floor_app.py, same clients, database and workers
    soak: LoadResult | None = None
    soak_rss_kib: tuple[int, int] = (0, 0)  # the server's RSS at the soak's start and end


class InvoicePool:
    """Seeded invoices handed out in order; a run uses one for each request it made."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = ids
        self.next = 0

    def take(self, count: int) -> list[str]:
        taken = self.ids[self.next : self.next + count]
        self.next += len(taken)
        return taken

    def rest(self) -> list[str]:
        return self.ids[self.next :]

    def used(self, load: LoadResult, clients: int) -> None:
        # Requests still in flight when the run stopped used an invoice too, unanswered.
        self.next += sum(v for k, v in load.statuses.items() if not k.startswith("(")) + clients


def run_config(args: argparse.Namespace, workers: int, tmp: Path) -> ConfigResult:
    from tests.fakes.servers import serve_localstripe

    result = ConfigResult(workers)
    wrk = use_wrk(args.loadgen)
    result.loadgen = "wrk" if wrk else "httpx"
    with (
        bench_database(args.admin_url) as database_url,
        serve_localstripe() as localstripe,
    ):
        with paygate_server(database_url, workers, tmp / f"paygate-{workers}.log") as (base, pid):
            setup = set_up(base, None if args.skip_stripe else localstripe)
            total = args.invoices + int(args.soak * 400)
            pool = InvoicePool(seed_invoices(database_url, setup.template_invoice, total))
            warm = pool.take(args.warmup_invoices)
            seq = pool.take(args.sequential)
            stripe_ids = pool.take(args.stripe_pairs + 1)
            workers_now = worker_pids(pid) if workers > 1 else [pid]
            database_name = urlsplit(database_url).path.lstrip("/")
            groups = {"server": workers_now, "postgres": postgres_pids(database_name)}
            run = payment_runner(wrk)
            log(f"[{workers} worker(s)] warm-up: {args.warmup:g} s")
            run(setup, warm, args.clients, args.warmup, groups)
            analyze(database_url)  # plans made with payments in the tables
            groups["postgres"] = postgres_pids(database_name)  # the pool's backends exist by now
            log(f"[{workers} worker(s)] sandbox: {args.clients} clients, {args.duration:g} s")
            profilers = [profiler(args, workers, p) for p in (workers_now if args.profile else [])]
            result.load = run(setup, pool.rest(), args.clients, args.duration, groups)
            pool.used(result.load, args.clients)
            for spy in profilers:
                spy.wait(timeout=60)
            per = result.load.cpu["server"]["per_process"]
            result.worker_split = [per[p] for p in workers_now]
            if args.many_clients:
                many = args.many_clients * workers
                log(f"[{workers} worker(s)] sandbox: {many} clients, {args.many_duration:g} s")
                groups["postgres"] = postgres_pids(database_name)
                result.many = run(setup, pool.rest(), many, args.many_duration, groups)
                pool.used(result.many, many)
            log(f"[{workers} worker(s)] sandbox latency at concurrency 1: {len(seq)} payments")
            result.sequential_ms = [s * 1000 for s in asyncio.run(sequential_sandbox(setup, seq))]
            if not args.skip_stripe:
                log(f"[{workers} worker(s)] Stripe A/B: {args.stripe_pairs} pairs")
                result.stripe = asyncio.run(
                    stripe_added_latency(setup, localstripe, stripe_ids, args.stripe_pairs, 60)
                )
                if result.stripe.skipped:
                    log(f"  Stripe part skipped: {result.stripe.skipped}")
            if args.soak and workers == max(int(w) for w in args.workers.split(",")):
                log(f"[{workers} worker(s)] soak: {args.clients} clients, {args.soak:g} s")
                start_rss = sum(vm_rss_kib(p) for p in server_pids(pid))
                groups["postgres"] = postgres_pids(database_name)
                result.soak = run(setup, pool.rest(), args.clients, args.soak, groups)
                pool.used(result.soak, args.clients)
                result.soak_rss_kib = (start_rss, sum(vm_rss_kib(p) for p in server_pids(pid)))
            result.memory_kib = {p: vm_hwm_kib(p) for p in server_pids(pid)}
        if not args.skip_floor:
            result.floor = run_floor(args, workers, tmp, database_url, pool.rest(), setup, run)
    return result


def run_floor(
    args: argparse.Namespace,
    workers: int,
    tmp: Path,
    database_url: str,
    ids: list[str],
    setup: Setup,
    run: Any,
) -> LoadResult:
    """The floor app on the same database (paygate stopped), clients, duration and workers."""
    with floor_server(database_url, workers, tmp / f"floor-{workers}.log") as (base, pid):
        database_name = urlsplit(database_url).path.lstrip("/")
        groups = {"server": worker_pids(pid), "postgres": postgres_pids(database_name)}
        target = Target(base, FLOOR_PATH)
        log(f"[{workers} worker(s)] floor: {args.clients} clients, {args.duration:g} s")
        warm = run(setup, ids[: args.warmup_invoices], args.clients, args.warmup, groups, target)
        pool = InvoicePool(ids)
        pool.used(warm, args.clients)
        rest = pool.rest()
        groups["postgres"] = postgres_pids(database_name)
        loaded: LoadResult = run(setup, rest, args.clients, args.duration, groups, target)
        return loaded


def profiler(args: argparse.Namespace, workers: int, pid: int) -> subprocess.Popen[bytes]:
    """py-spy on one server process for the measured run (--profile)."""
    command = [
        args.py_spy, "record", "--pid", str(pid), "--duration", f"{args.duration:g}",
        "--rate", "250", "--format", args.profile_format, "--nonblocking",
        "--output", f"{args.profile}.{workers}w.{pid}",
        # Only samples holding the GIL: Python's own CPU, not a thread waiting in a syscall
        # (on a busy machine those waits would look like work).
        *(["--gil"] if args.profile_gil else []),
    ]  # fmt: skip
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- report ----------------------------------------------------------------------------------


def report(results: list[ConfigResult], args: argparse.Namespace) -> None:
    print()
    print(
        f"paygate payments benchmark  ({os.cpu_count()} CPUs, {args.clients} clients,"
        f" {args.duration:g} s; targets: >= 300 payments/s, added p50 <= 3 ms, p99 <= 15 ms)"
    )
    rows = [
        ("", *(f"{r.workers} worker{'s' if r.workers > 1 else ''}" for r in results)),
    ]

    def row(label: str, values: list[str]) -> None:
        rows.append((label, *values))

    row("load generator", [r.loadgen for r in results])
    row("sandbox payments/s", [f"{r.load.rate:.0f}" if r.load else "-" for r in results])
    row("  latency p50 / p99 ms", [
        f"{r.load.p50_ms:.1f} / {r.load.p99_ms:.1f}" if r.load else "-" for r in results
    ])  # fmt: skip
    row("  answers", [
        " ".join(f"{k}:{v}" for k, v in sorted(r.load.statuses.items())) if r.load else "-"
        for r in results
    ])  # fmt: skip

    def cpu(r: ConfigResult, name: str) -> str:
        if not r.load:
            return "-"
        return f"{r.load.cpu[name]['cpu_s'] / r.load.cpu['elapsed_s']:.2f}"

    def per_payment(r: ConfigResult, name: str) -> str:
        if not r.load or not r.load.ok:
            return "-"
        return f"{r.load.cpu[name]['cpu_s'] / r.load.ok * 1000:.1f}"

    def cpu_per(load: LoadResult | None) -> float:
        if not load or not load.ok:
            return 0.0
        return float(load.cpu["server"]["cpu_s"]) / load.ok * 1000

    def per_payment_of(load: LoadResult | None, name: str) -> str:
        if not load or not load.ok:
            return "-"
        return f"{load.cpu[name]['cpu_s'] / load.ok * 1000:.1f}"

    row("  server CPU ms / payment", [per_payment(r, "server") for r in results])
    row("  postgres CPU ms / payment", [per_payment(r, "postgres") for r in results])
    row("  CPU cores: server", [cpu(r, "server") for r in results])
    row("  CPU cores: postgres", [cpu(r, "postgres") for r in results])
    row("  CPU cores: load generator", [
        f"{r.load.loadgen_cpu_s / r.load.cpu['elapsed_s']:.2f}" if r.load else "-"
        for r in results
    ])  # fmt: skip
    row("  machine busy", [
        f"{r.load.cpu['machine_busy_fraction'] * 100:.0f}%" if r.load else "-" for r in results
    ])  # fmt: skip
    row("  worker CPU split s", [
        " / ".join(f"{s:.1f}" for s in r.worker_split) or "-" for r in results
    ])  # fmt: skip
    row("floor payments/s (bench/floor_app.py)", [
        f"{r.floor.rate:.0f}" if r.floor else "-" for r in results
    ])  # fmt: skip
    row("  floor server CPU ms / payment", [per_payment_of(r.floor, "server") for r in results])
    row("  paygate / floor: payments/s", [
        f"{r.load.rate / r.floor.rate:.2f}x" if r.load and r.floor and r.floor.rate else "-"
        for r in results
    ])  # fmt: skip
    row("  paygate / floor: server CPU per payment", [
        f"{cpu_per(r.load) / cpu_per(r.floor):.2f}x"
        if r.load and r.floor and cpu_per(r.floor) else "-"
        for r in results
    ])  # fmt: skip
    row("crowd run: clients", [
        str(args.many_clients * r.workers) if r.many else "-" for r in results
    ])  # fmt: skip
    row("  payments/s, p50 / p99 ms", [
        f"{r.many.rate:.0f}, {r.many.p50_ms:.1f} / {r.many.p99_ms:.1f}" if r.many else "-"
        for r in results
    ])  # fmt: skip
    row("  answers", [
        " ".join(f"{k}:{v}" for k, v in sorted(r.many.statuses.items())) if r.many else "-"
        for r in results
    ])  # fmt: skip
    row("soak: seconds, payments/s", [
        f"{r.soak.seconds:.0f} s, {r.soak.rate:.0f}/s" if r.soak else "-" for r in results
    ])  # fmt: skip
    row("  errors (non-201 answers)", [
        str(sum(v for k, v in r.soak.statuses.items() if k != "201")) if r.soak else "-"
        for r in results
    ])  # fmt: skip
    row("  server RSS start -> end MiB", [
        f"{r.soak_rss_kib[0] / 1024:.0f} -> {r.soak_rss_kib[1] / 1024:.0f}" if r.soak else "-"
        for r in results
    ])  # fmt: skip
    row("sandbox c=1 p50 / p99 ms", [
        f"{pct(r.sequential_ms, 50):.1f} / {pct(r.sequential_ms, 99):.1f}"
        if r.sequential_ms else "-"
        for r in results
    ])  # fmt: skip
    for label, attr in (
        ("Stripe A via paygate", "a_ms"),
        ("Stripe B direct SDK", "b_ms"),
        ("added A-B (paired)", "diff_ms"),
    ):
        values = []
        for r in results:
            s = r.stripe
            if s is None or s.skipped:
                values.append("skipped" if s else "-")
                continue
            v = getattr(s, attr)
            values.append(f"{pct(v, 50):.1f} / {pct(v, 99):.1f}  (n={len(v)})")
        row(f"{label} p50 / p99 ms", values)
    row("added: p50(A)-p50(B) / p99(A)-p99(B)", [
        f"{pct(r.stripe.a_ms, 50) - pct(r.stripe.b_ms, 50):.1f}"
        f" / {pct(r.stripe.a_ms, 99) - pct(r.stripe.b_ms, 99):.1f}"
        if r.stripe and not r.stripe.skipped and r.stripe.a_ms else "-"
        for r in results
    ])  # fmt: skip
    row("peak memory (VmHWM, sum) MiB", [
        f"{sum(r.memory_kib.values()) / 1024:.0f}"
        f"  ({' + '.join(f'{v / 1024:.0f}' for v in r.memory_kib.values())})"
        for r in results
    ])  # fmt: skip
    widths = [max(len(str(row_[i])) for row_ in rows) for i in range(len(rows[0]))]
    for row_ in rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(row_, widths, strict=True)).rstrip())
    best = max((r for r in results if r.load), key=lambda r: r.load.rate, default=None)  # type: ignore[union-attr]
    if best is not None and len(results) > 1:
        print(f"\nbest throughput: {best.workers} worker(s)")
    for r in results:
        if r.stripe and r.stripe.skipped:
            print(f"\nStripe part skipped ({r.workers} worker(s)): {r.stripe.skipped}")
    if args.json:
        Path(args.json).write_text(
            json.dumps(
                [
                    {
                        "workers": r.workers,
                        "payments_per_s": r.load.rate if r.load else None,
                        "p50_ms": r.load.p50_ms if r.load else None,
                        "p99_ms": r.load.p99_ms if r.load else None,
                        "statuses": r.load.statuses if r.load else None,
                        "sequential_ms": r.sequential_ms,
                        "stripe_a_ms": r.stripe.a_ms if r.stripe else None,
                        "stripe_b_ms": r.stripe.b_ms if r.stripe else None,
                        "stripe_skipped": r.stripe.skipped if r.stripe else None,
                        "memory_kib": r.memory_kib,
                        "floor_payments_per_s": r.floor.rate if r.floor else None,
                        "crowd_payments_per_s": r.many.rate if r.many else None,
                        "crowd_statuses": r.many.statuses if r.many else None,
                        "soak_statuses": r.soak.statuses if r.soak else None,
                        "soak_rss_kib": r.soak_rss_kib if r.soak else None,
                    }
                    for r in results
                ],
                indent=2,
            )
        )


def add_common_arguments(parser: argparse.ArgumentParser, profile_help: str) -> None:
    """The options every bench has: load generator, profiling, the PostgreSQL to use."""
    parser.add_argument("--loadgen", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--profile", help=profile_help)
    parser.add_argument("--profile-format", default="raw", help="py-spy format: raw, flamegraph")
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy: only samples holding the GIL"
    )
    parser.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("PAYGATE_BENCH_DATABASE_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL of a database to connect to for CREATE/DROP DATABASE",
    )


def check_common_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """127.0.0.1 only; runs bounded (--duration at most 120 s, --warmup 30 s)."""
    if urlsplit(args.admin_url).hostname not in (HOST, "localhost", None):
        parser.error("the benchmark only talks to 127.0.0.1")
    args.duration = min(args.duration, 120)
    args.warmup = min(args.warmup, 30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", default="1,2", help="uvicorn worker counts to measure")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=15, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3, help="warm-up seconds")
    parser.add_argument("--invoices", type=int, default=40_000, help="invoices seeded")
    parser.add_argument("--warmup-invoices", type=int, default=4_000)
    parser.add_argument("--sequential", type=int, default=300, help="payments at concurrency 1")
    parser.add_argument("--stripe-pairs", type=int, default=150, help="A/B pairs (localstripe)")
    parser.add_argument("--skip-stripe", action="store_true")
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the floor app")
    parser.add_argument(
        "--many-clients", type=int, default=64, help="clients per worker of the crowd run (0: off)"
    )
    parser.add_argument("--many-duration", type=float, default=10, help="crowd run seconds")
    parser.add_argument(
        "--soak", type=float, default=0, help="seconds of soak at the largest worker count"
    )
    parser.add_argument("--json", help="also write the raw figures to this file")
    add_common_arguments(parser, "py-spy the server workers during the measured run into PATH.*")
    args = parser.parse_args()
    check_common_arguments(parser, args)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench")))
    args.soak = min(args.soak, 900)
    signal.alarm(HARD_DEADLINE_SECONDS + int(args.soak) * 2)
    results = []
    with tempfile.TemporaryDirectory(prefix="paygate-bench-") as tmp:
        for workers in (int(w) for w in args.workers.split(",")):
            results.append(run_config(args, workers, Path(tmp)))
    report(results, args)


if __name__ == "__main__":
    main()
