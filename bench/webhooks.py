"""Webhooks benchmark: verified Stripe-style events through a running paygate, on PostgreSQL.

Self-contained and bounded. It:
  1. creates its own database (dropped at the end), starts `paygate serve --workers N` in
     production mode (as bench/payments.py does) and a `paygate worker` beside it with the
     same master key, so received events are processed as in production;
  2. registers a company (and a second one), creates a Stripe gateway through the API with
     a webhook signing secret (sealed by paygate as every credential), and seeds `--events`
     invoices with a `processing` Stripe payment each (SQL copies, a PaymentIntent id each);
  3. verified: `--clients` keep-alive connections post one `payment_intent.succeeded` event
     per payment to /webhooks/{gateway}, signed as Stripe signs (`Stripe-Signature:
     t=...,v1=hex HMAC-SHA256 of "t.body"`), computed here, not with paygate's code, while
     the job worker processes them;
  4. lag: once the worker has processed the events (or `--drain` seconds), the time from
     each measured event's receipt (`webhook_events.received_at`) to its payment's move to
     succeeded (`payments.updated_at`, written by the settle path), as percentiles;
  5. duplicates: the events paygate stored, sent again (re-signed with a fresh `t`, as
     Stripe's retries are): each must be answered 200 `duplicate: true`;
  6. the floor: bench/floor_app.py's POST /floor/webhooks/{id} (insert the raw body, commit)
     on the same database, worker count and load generator, the same bodies; paygate's
     events/s and server CPU per event are printed as ratios to the floor's.

Targets (issue 11): at least 1,000 verified events/s, and at least 0.5x the floor.

Run: .venv/bin/python bench/webhooks.py   (see bench/README.md for options and reading)
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/payments.py's helpers

from payments import (
    HARD_DEADLINE_SECONDS,
    LoadResult,
    Workload,
    add_common_arguments,
    analyze,
    bench_database,
    check_common_arguments,
    floor_server,
    free_port,
    httpx_load,
    log,
    paygate_env,
    paygate_server,
    paygate_worker,
    pct,
    postgres_pids,
    profiler,
    use_wrk,
    worker_pids,
    wrk_load,
)
from webhook_data import (
    SERVER_APP,
    WORKER_APP,
    Event,
    Lag,
    Setup,
    lag_of_run,
    postgres_groups,
    seed_payments,
    set_up,
    signed,
    stored_event_ids,
    wait_for_processing,
)

# One event per item: "<Stripe-Signature value>\t<raw JSON body>".
WEBHOOK_LUA = r"""
local path = os.getenv("BENCH_PATH")

function make_request(item)
  local tab = item:find("\t", 1, true)
  return wrk.format("POST", path, {
    ["Content-Type"] = "application/json; charset=utf-8",
    ["Stripe-Signature"] = item:sub(1, tab - 1),
    ["User-Agent"] = "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
  }, item:sub(tab + 1))
end

function classify(status, body)
  if status == 200 and body:find('"duplicate":true', 1, true) then return "200 duplicate" end
  if status == 200 and body:find('"received":true', 1, true) then return "200 new" end
  return tostring(status)
end
"""


def classify(status: int, body: bytes) -> str:
    """The Lua `classify`, for the httpx load generator."""
    if status == 200 and b'"duplicate":true' in body:
        return "200 duplicate"
    if status == 200 and b'"received":true' in body:
        return "200 new"
    return str(status)


def webhook_workload(base: str, path: str, *, ok: str = "200 new", wrap: bool = False) -> Workload:
    """`ok`: the answer counted; `wrap`: send the items again when they run out (duplicates
    stay duplicates; the floor checks nothing)."""

    def build(item: str) -> tuple[str, dict[str, str], bytes]:
        signature, _, body = item.partition("\t")
        headers = {"Content-Type": "application/json", "Stripe-Signature": signature}
        return path, headers, body.encode()

    return Workload(
        base=base,
        lua=WEBHOOK_LUA,
        env={"BENCH_PATH": path},
        build=build,
        classify=classify,
        ok=ok,
        wrap=wrap,
    )


# --- the run -----------------------------------------------------------------------------


@dataclass
class Result:
    workers: int
    loadgen: str
    verified: LoadResult | None = None
    duplicates: LoadResult | None = None
    floor: LoadResult | None = None
    lag: Lag = field(default_factory=Lag)


Load = Callable[[Workload, list[str], int, float, dict[str, list[int]]], LoadResult]


def run(args: argparse.Namespace, tmp: Path) -> Result:
    wrk = use_wrk(args.loadgen)
    load: Load = wrk_load if wrk else httpx_load
    result = Result(args.workers, "wrk" if wrk else "httpx")
    with bench_database(args.admin_url) as database_url:
        env = paygate_env(database_url, free_port())
        server_env = {**env, "PGAPPNAME": SERVER_APP}
        with paygate_server(database_url, args.workers, tmp / "paygate.log", env=server_env) as (
            base,
            pid,
        ):
            setup = set_up(base)
            log(f"seeding {args.events} payments and their events")
            events = seed_payments(database_url, setup, args.events)
            servers = worker_pids(pid) if args.workers > 1 else [pid]
            paygate = Paygate(base, setup, servers, {**env, "PGAPPNAME": WORKER_APP})
            measure_paygate(args, result, database_url, paygate, events, load, tmp)
        if not args.skip_floor:
            result.floor = run_floor(args, database_url, setup, events, load, tmp)
    return result


@dataclass(frozen=True)
class Paygate:
    base: str
    setup: Setup
    servers: list[int]  # the processes serving requests
    worker_env: dict[str, str]  # the job worker's


def measure_paygate(
    args: argparse.Namespace,
    result: Result,
    database_url: str,
    paygate: Paygate,
    events: list[Event],
    load: Load,
    tmp: Path,
) -> None:
    """Warm-up, the verified run, the lag, the duplicates run."""
    base, secret = paygate.base, paygate.setup.secret
    path = f"/webhooks/{paygate.setup.gateway_id}"
    with ExitStack() as stack:

        def start_worker() -> int:
            worker = paygate_worker(paygate.worker_env, args.worker_concurrency, tmp / "worker.log")
            return stack.enter_context(worker)

        groups = {"server": paygate.servers, "worker": []}
        if not args.process_after:
            groups["worker"] = [start_worker()]
        warm = events[: args.warmup_events]
        log(f"warm-up: {args.warmup:g} s")
        load(webhook_workload(base, path), signed(warm, secret), args.clients, args.warmup,
             groups)  # fmt: skip
        if not args.process_after:
            wait_for_processing(database_url, args.drain)
        analyze(database_url)
        groups |= postgres_groups(database_url)
        measured = events[len(warm) :]
        log(f"verified: {args.clients} clients, {args.duration:g} s")
        profiled = [*paygate.servers, *groups["worker"]] if args.profile else []
        spies = [profiler(args, args.workers, p) for p in profiled]
        start = datetime.now(UTC)
        result.verified = load(webhook_workload(base, path), signed(measured, secret),
                               args.clients, args.duration, groups)  # fmt: skip
        end = datetime.now(UTC)
        for spy in spies:
            spy.wait(timeout=60)
        if args.process_after:
            groups["worker"] = [start_worker()]
        log(f"waiting for the worker to process the events (at most {args.drain:g} s)")
        pending, waited = wait_for_processing(database_url, args.drain)
        result.lag = lag_of_run(database_url, start, end)
        result.lag.pending, result.lag.drain_s = pending, waited
        # The worker is idle from here on (unless events are still pending): a duplicate
        # defers nothing.
        stored = stored_event_ids(database_url)
        again = [e for e in measured if e.event_id in stored]
        log(f"duplicates: {len(again)} stored events again, {args.duration:g} s")
        groups |= postgres_groups(database_url)
        duplicates = webhook_workload(base, path, ok="200 duplicate", wrap=True)
        result.duplicates = load(duplicates, signed(again, secret), args.clients, args.duration,
                                 groups)  # fmt: skip


def run_floor(
    args: argparse.Namespace,
    database_url: str,
    setup: Setup,
    events: list[Event],
    load: Load,
    tmp: Path,
) -> LoadResult:
    """bench/floor_app.py's webhook endpoint on the same database (paygate stopped), the
    same clients, duration, worker count and bodies."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE bench_webhook_bodies (id text PRIMARY KEY, gateway_id text NOT NULL,"
            " body bytea NOT NULL, received_at timestamptz NOT NULL DEFAULT now())"
        )
    with floor_server(database_url, args.workers, tmp / "floor.log") as (base, pid):
        database_name = urlsplit(database_url).path.lstrip("/")
        groups = {"server": worker_pids(pid)}
        workload = webhook_workload(base, f"/floor/webhooks/{setup.gateway_id}", wrap=True)
        items = signed(events, setup.secret)
        log(f"floor: {args.clients} clients, {args.duration:g} s")
        load(workload, items[: args.warmup_events], args.clients, args.warmup, groups)
        groups["postgres"] = postgres_pids(database_name)
        return load(workload, items[args.warmup_events :], args.clients, args.duration, groups)


# --- report ------------------------------------------------------------------------------


def report(result: Result, args: argparse.Namespace) -> None:
    rows: list[tuple[str, str]] = []

    def row(label: str, value: str) -> None:
        rows.append((label, value))

    def per_event(load: LoadResult | None, name: str) -> float | None:
        if load is None or not load.ok or name not in load.cpu:
            return None
        return float(load.cpu[name]["cpu_s"]) / load.ok * 1000

    def shown(value: float | None, fmt: str = "{:.2f}") -> str:
        return "-" if value is None else fmt.format(value)

    def run_rows(title: str, load: LoadResult | None, groups: tuple[str, ...]) -> None:
        if load is None:
            row(title, "-")
            return
        row(title, f"{load.rate:.0f}")
        row("  latency p50 / p99 ms", f"{load.p50_ms:.1f} / {load.p99_ms:.1f}")
        row("  answers", " ".join(f"{k}:{v}" for k, v in sorted(load.statuses.items())))
        for name in groups:
            row(f"  {name} CPU ms / event", shown(per_event(load, name)))
        cores = [f"{n} {load.cpu[n]['cpu_s'] / load.cpu['elapsed_s']:.2f}" for n in groups]
        cores.append(f"load generator {load.loadgen_cpu_s / load.cpu['elapsed_s']:.2f}")
        row("  CPU cores", ", ".join(cores))
        row("  machine busy", f"{load.cpu['machine_busy_fraction'] * 100:.0f}%")

    def ratio(a: float | None, b: float | None) -> str:
        return f"{a / b:.2f}x" if a is not None and b else "-"

    v, d, f = result.verified, result.duplicates, result.floor
    row("load generator", result.loadgen)
    paygate_groups = ("server", "postgres: server", "worker", "postgres: worker")
    run_rows("verified events/s", v, paygate_groups)
    run_rows("duplicates/s", d, paygate_groups)
    run_rows("floor events/s (bench/floor_app.py)", f, ("server", "postgres"))
    row("paygate / floor: events/s", ratio(v.rate if v else None, f.rate if f else None))
    row("paygate / floor: server CPU per event",
        ratio(per_event(v, "server"), per_event(f, "server")))  # fmt: skip
    row("paygate / floor: its PostgreSQL CPU per event",
        ratio(per_event(v, "postgres: server"), per_event(f, "postgres")))  # fmt: skip
    row("duplicates / floor: events/s", ratio(d.rate if d else None, f.rate if f else None))
    lag = result.lag
    row("lag receipt -> payment succeeded", (
        f"p50 {pct(lag.ms, 50):.0f} ms, p99 {pct(lag.ms, 99):.0f} ms, max {max(lag.ms):.0f} ms"
        + (f"  (a lower bound: {lag.pending} events never processed)" if lag.pending else "")
        if lag.ms else "-"
    ))  # fmt: skip
    row("  events of the verified run", (
        f"{lag.received} received, {len(lag.ms)} moved their payment to succeeded,"
        f" {lag.pending} still pending after waiting {lag.drain_s:.0f} s"
    ))  # fmt: skip
    seconds = v.seconds if v else 0.0
    row("  processed/s: during the run, after it", (
        f"{lag.processed_in_run / seconds:.0f}, "
        f"{(len(lag.ms) - lag.processed_in_run) / lag.drain_s:.0f}"
        if seconds and lag.drain_s else "-"
    ))  # fmt: skip
    print()
    print(
        f"paygate webhooks benchmark  ({os.cpu_count()} CPUs, {result.workers} server"
        f" worker(s), job worker concurrency {args.worker_concurrency}"
        f" {'started after the verified run' if args.process_after else 'running throughout'},"
        f" {args.clients} clients, {args.duration:g} s;"
        " targets: >= 1000 verified events/s, >= 0.5x the floor)"
    )
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        print(f"{label.ljust(width)}  {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    parser.add_argument("--worker-concurrency", type=int, default=4, help="jobs run at once")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=10, help="seconds of each run")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds")
    parser.add_argument("--events", type=int, default=25_000, help="payments (events) seeded")
    parser.add_argument("--warmup-events", type=int, default=3_000)
    parser.add_argument(
        "--drain", type=float, default=120, help="seconds to wait for the events' processing"
    )
    parser.add_argument("--skip-floor", action="store_true", help="do not measure the floor app")
    parser.add_argument(
        "--process-after",
        action="store_true",
        help="start the job worker only after the verified run (the receive path alone; the "
        "lag is then the backlog's)",
    )
    add_common_arguments(
        parser, "py-spy the server workers and the job worker during the verified run"
    )
    args = parser.parse_args()
    check_common_arguments(parser, args)
    if args.warmup_events >= args.events:
        parser.error("--events must be more than --warmup-events")
    args.drain = min(args.drain, 300)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench")))
    signal.alarm(HARD_DEADLINE_SECONDS)
    with tempfile.TemporaryDirectory(prefix="paygate-bench-") as tmp:
        result = run(args, Path(tmp))
    report(result, args)


if __name__ == "__main__":
    main()
