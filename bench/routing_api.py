"""Routing benchmark, API part: payments through a running paygate with routing and one
failover per payment, beside bench/payments.py's plain rate, in the same run.

bench/routing.py runs it after the decision figures (`--skip-api` leaves it out). The
server, database, seeding, load (wrk or httpx) and CPU helpers are bench/payments.py's.
  1. a database of its own, `paygate serve` (production mode, no job worker) and two
     custom-gateway emulators (tests/fakes/custom_gateway.py), each in its own process on
     127.0.0.1: A answers every request 503 (the contract's "did nothing": a technical
     failure that fails over), B takes payments;
  2. a company (and a second one, as payments.py keeps) with its sandbox gateway, custom
     gateways A and B, the rule "invoice metadata bench=failover -> A, then B", the default
     list [B] and a retry policy allowing API failover. The policy's breaker opens after at
     most 100 failures in a row and routing then skips A, so there would be no failover to
     measure: the benchmark raises `breaker_failures` past the run's length in the database.
     Each failover still counts on A's breaker, as in production;
  3. three load runs, same clients and length: `plain` (payments.py's: the sandbox gateway
     named, no routing), `routed` (routing's first choice is B, no failover), `failover`
     (A answers 503, then B); payments/s, p50/p99, CPU per payment of the server, PostgreSQL
     and the emulators. The database then tells how many payments failed over exactly once;
  4. at concurrency 1, interleaved rounds (the order rotated each round) of a routed
     payment R, a failover payment F, and paygate's adapter calling A alone (cA) and B alone
     (cB) from this process (`payments.failover.attempt_once`, what the failover loop runs).
     Failover's own work = (F - R) - cA, paired per round: what paygate adds beyond the
     failed call. Target (issue 13): no more than cB, the second gateway call itself.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg

from bench import payments as pb  # its server, database, seeding, load and CPU helpers
from paygate.gateways.adapters.base import (
    AdapterConfig,
    Environment,
    GatewayType,
    PaymentRequest,
    PaymentResult,
)
from paygate.gateways.adapters.base_errors import GatewayUnavailable
from paygate.kit.ids import new_id
from paygate.kit.logging import configure_logging
from paygate.payments.failover import attempt_once

ROOT = Path(__file__).resolve().parent.parent
API_KEY = "cgw_bench_key_7d41c2a9e05b"
TOKEN = "tok_visa"  # the emulators' success token
ROUTED_BODY = json.dumps({"payment_method": TOKEN})  # no gateway_id: routing decides

# Runs in the subprocess: one custom-gateway emulator on the given port.
_EMULATOR_BOOT = """
import sys
sys.path.insert(0, sys.argv[1])
import uvicorn
from tests.fakes.custom_gateway import CustomGatewayEmulator
emulator = CustomGatewayEmulator(api_key=sys.argv[3])
if sys.argv[4]:
    emulator.knobs.fail_status = int(sys.argv[4])
uvicorn.run(emulator.app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False, lifespan="off")
"""


@contextmanager
def emulator(fail_status: int | None, log_file: Path) -> Iterator[tuple[str, int]]:
    """A custom-gateway emulator in a process of its own: (base URL, pid)."""
    port = pb.free_port()
    command = [
        sys.executable, "-c", _EMULATOR_BOOT, str(ROOT), str(port), API_KEY,
        str(fail_status or ""),
    ]  # fmt: skip
    with log_file.open("wb") as out:
        process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        base = f"http://{pb.HOST}:{port}"
        try:
            pb.wait_until_ready(process, f"{base}/health", log_file, any_status=True)
            yield base, process.pid
        finally:
            pb.stop_process_group(process)


def custom_config(base_url: str) -> AdapterConfig:
    """The adapter configuration paygate builds for a custom test gateway at `base_url`."""
    return AdapterConfig(
        gateway_type=GatewayType.CUSTOM,
        environment=Environment.TEST,
        values={"base_url": base_url, "api_key": API_KEY},
        guard_outbound=False,  # as the server's PAYGATE_TEST_GATEWAYS_REACH_PRIVATE_ADDRESSES
    )


@dataclass(frozen=True)
class Routes:
    a: str  # gateway ids
    b: str
    failover_template: str  # an invoice whose metadata sends it to A, then B


def set_up_routes(setup: pb.Setup, a_url: str, b_url: str, database_url: str) -> Routes:
    with httpx.Client(base_url=setup.base, timeout=30, headers=setup.owner_headers) as client:

        def send(method: str, path: str, payload: object) -> dict[str, str]:
            answer = client.request(method, path, json=payload)
            answer.raise_for_status()
            body: dict[str, str] = answer.json()
            return body

        def gateway(name: str, url: str) -> str:
            return send("POST", "/api/v1/gateways", {
                "name": name, "gateway_type": "custom", "environment": "test",
                "configuration": {"base_url": url, "api_key": API_KEY},
                "supported_currencies": ["USD"],
            })["id"]  # fmt: skip

        a, b = gateway("A (answers 503)", a_url), gateway("B", b_url)
        send("PUT", "/api/v1/routing-rules/default", {"gateway_ids": [b]})
        send("POST", "/api/v1/routing-rules", {
            "name": "bench: A, then B",
            "conditions": {"metadata": {"bench": "failover"}},
            "action": {"type": "priority", "gateway_ids": [a, b]},
        })  # fmt: skip
        send("PUT", "/api/v1/retry-policy", {
            "max_attempts": 2, "retry_decline_codes": ["processing_error"],
            "failover_customer_present": True, "failover_api": True,
            "breaker_failures": 100, "breaker_cooldown_seconds": 60,
        })  # fmt: skip
        invoice = client.post(
            "/api/v1/invoices",
            headers=setup.headers,
            json={
                "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
                "currency": "USD",
                "line_items": [{"description": "Consulting", "quantity": 1, "unit_amount": 12_500}],
                "metadata": {"bench": "failover"},
            },
        )
        invoice.raise_for_status()
    with psycopg.connect(database_url, autocommit=True) as conn:
        # Past any run's length: A's breaker never opens, so every payment fails over.
        conn.execute(
            "UPDATE retry_policies SET breaker_failures = 1000000000"
            " WHERE company_id = (SELECT company_id FROM gateways WHERE id = %s)",
            (a,),
        )
    return Routes(a, b, invoice.json()["id"])


def failed_over(database_url: str, routes: Routes) -> tuple[int, int, int, int]:
    """(failover-path payments, of which A failed technically then B succeeded, routed-path
    payments at B, of which one attempt succeeded at B)."""
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            """
            SELECT count(*) FILTER (WHERE i.metadata->>'bench' = 'failover'),
                   count(*) FILTER (WHERE i.metadata->>'bench' = 'failover' AND t.n = 2
                                    AND t.a_failed AND t.b_ok AND p.status = 'succeeded'),
                   count(*) FILTER (WHERE i.metadata->>'bench' IS NULL AND p.gateway_id = %(b)s),
                   count(*) FILTER (WHERE i.metadata->>'bench' IS NULL AND t.n = 1 AND t.b_ok
                                    AND p.status = 'succeeded')
            FROM payments p JOIN invoices i ON i.id = p.invoice_id
            CROSS JOIN LATERAL (
                SELECT count(*) AS n,
                       bool_or(gateway_id = %(a)s AND status = 'failed'
                               AND failure_kind = 'technical') AS a_failed,
                       bool_or(gateway_id = %(b)s AND status = 'succeeded') AS b_ok
                FROM payment_attempts WHERE payment_id = p.id
            ) t
            """,
            {"a": routes.a, "b": routes.b},
        ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]


# --- concurrency 1, paired ---------------------------------------------------------------


class Rounds(dict[str, list[float]]):
    """Per round, in ms: R and F (payments, with `_server` and `_postgres`: the CPU they
    used there), cA and cB (calls, with `_cpu`: this process's CPU)."""

    def __missing__(self, key: str) -> list[float]:
        self[key] = []
        return self[key]

    def paired(self, *keys: str) -> list[float]:
        """Per round, the first series less the others (F, R, cA: failover's own work)."""
        return [first - sum(rest) for first, *rest in zip(*(self[k] for k in keys), strict=True)]

    def mean(self, key: str) -> float:
        # CPU is read from /proc in clock ticks: only a mean over many rounds is fair.
        return sum(self[key]) / len(self[key]) if self[key] else float("nan")


async def paired_rounds(
    setup: pb.Setup,
    urls: tuple[str, str],
    invoices: tuple[list[str], list[str]],
    groups: dict[str, list[int]],
    rounds: int,
) -> Rounds:
    """`rounds` rounds of R, F, cA, cB, each round in another order; round 0 warms up."""
    result = Rounds()
    config_a, config_b = custom_config(urls[0]), custom_config(urls[1])
    async with httpx.AsyncClient(base_url=setup.base, timeout=30) as client:

        def cpu_ms(group: str) -> float:
            return sum(pb.cpu_seconds(p) for p in groups[group]) * 1000

        async def pay(into: Rounds, name: str, invoice: str, attempts: int) -> None:
            server, postgres = cpu_ms("server"), cpu_ms("postgres")
            seconds, answer = await pb.post_payment(client, setup, invoice, ROUTED_BODY)
            into[f"{name}_server"].append(cpu_ms("server") - server)
            into[f"{name}_postgres"].append(cpu_ms("postgres") - postgres)
            body = answer.json()
            if answer.status_code != 201 or len(body.get("attempts", [])) != attempts:
                raise RuntimeError(f"expected {attempts} attempt(s): {answer.text[:400]}")
            if body["status"] != "succeeded":
                raise RuntimeError(f"payment answered {answer.text[:400]}")
            into[name].append(seconds * 1000)

        async def call(into: Rounds, name: str, config: AdapterConfig, expect: type) -> None:
            payment_id = new_id("pay")
            request = PaymentRequest(  # as PaymentContext.request_of makes it
                reference=payment_id,
                idempotency_key=new_id("att"),
                amount=12_500,
                currency="USD",
                payment_method=TOKEN,
                return_url=f"{setup.base}/payments/{payment_id}/return",
                cancel_url=f"{setup.base}/payments/{payment_id}/return?canceled=1",
                description=f"Payment {payment_id}",
            )
            cpu, started = time.process_time(), time.perf_counter()
            outcome, _ = await attempt_once(config, request)
            into[name].append((time.perf_counter() - started) * 1000)
            into[f"{name}_cpu"].append((time.process_time() - cpu) * 1000)
            if not isinstance(outcome, expect):
                raise RuntimeError(f"direct call answered {outcome!r}")

        steps: list[Callable[[Rounds, int], Awaitable[None]]] = [
            lambda into, n: pay(into, "R", invoices[0][n], 1),
            lambda into, n: pay(into, "F", invoices[1][n], 2),
            lambda into, n: call(into, "cA", config_a, GatewayUnavailable),
            lambda into, n: call(into, "cB", config_b, PaymentResult),
        ]
        for n in range(rounds + 1):
            into = result if n else Rounds()
            for step in steps[n % 4 :] + steps[: n % 4]:
                await step(into, n)
    return result


# --- the run -----------------------------------------------------------------------------


@dataclass
class ApiResult:
    args: argparse.Namespace
    loadgen: str
    loads: dict[str, pb.LoadResult]
    rounds: Rounds
    counts: tuple[int, int, int, int]  # failed_over()


def run(args: argparse.Namespace) -> ApiResult:
    wrk = pb.use_wrk(args.loadgen)
    load = pb.payment_runner(wrk)
    configure_logging(json_logs=False, level="WARNING")  # as the server logs
    per_run = max(1000, int(600 * (args.duration + args.warmup)))  # up to 600/s
    with (
        pb.bench_database(args.database_url) as database_url,
        tempfile.TemporaryDirectory(prefix="paygate-bench-routing-") as tmp_dir,
        emulator(503, Path(tmp_dir) / "emulator-a.log") as (a_url, a_pid),
        emulator(None, Path(tmp_dir) / "emulator-b.log") as (b_url, b_pid),
        pb.paygate_server(database_url, args.workers, Path(tmp_dir) / "log") as (base, pid),
    ):
        setup = pb.set_up(base, None)
        routes = set_up_routes(setup, a_url, b_url, database_url)
        plain_pool = pb.InvoicePool(
            pb.seed_invoices(database_url, setup.template_invoice, 2 * per_run + args.rounds + 1)
        )
        failover_pool = pb.InvoicePool(
            pb.seed_invoices(
                database_url, routes.failover_template, per_run + args.rounds + 1, "FAILOVER"
            )
        )
        # Taken first, as payments.py does: the load runs' in-flight requests never reach them.
        routed_c1 = plain_pool.take(args.rounds + 1)
        failover_c1 = failover_pool.take(args.rounds + 1)
        database_name = urlsplit(database_url).path.lstrip("/")
        servers = pb.worker_pids(pid) if args.workers > 1 else [pid]
        groups = {"server": servers, "postgres": [], "emulators": [a_pid, b_pid]}
        paths = {
            "plain": (
                pb.Target(base, pb.PAYGATE_PATH, pb.payment_body(setup.sandbox_gateway)),
                plain_pool,
            ),
            "routed": (pb.Target(base, pb.PAYGATE_PATH, ROUTED_BODY), plain_pool),
            "failover": (pb.Target(base, pb.PAYGATE_PATH, ROUTED_BODY), failover_pool),
        }
        for name, (target, pool) in paths.items():
            pb.log(f"warm-up {name}: {args.warmup:g} s")
            warm = load(setup, pool.rest(), args.clients, args.warmup, groups, target)
            pool.used(warm, args.clients)
        pb.analyze(database_url)  # plans made with payments in the tables
        groups["postgres"] = pb.postgres_pids(database_name)  # the pool's backends exist by now
        loads = {}
        for name, (target, pool) in paths.items():
            pb.log(f"{name}: {args.clients} clients, {args.duration:g} s")
            # --profile: py-spy on the server, into PATH.<path>.<workers>w.<pid>.
            named = argparse.Namespace(**{**vars(args), "profile": f"{args.profile}.{name}"})
            spies = [pb.profiler(named, args.workers, p) for p in servers] if args.profile else []
            loads[name] = load(setup, pool.rest(), args.clients, args.duration, groups, target)
            pool.used(loads[name], args.clients)
            for spy in spies:
                spy.wait(timeout=60)
        pb.log(f"concurrency 1: {args.rounds} rounds of R, F, cA, cB")
        rounds = asyncio.run(
            paired_rounds(setup, (a_url, b_url), (routed_c1, failover_c1), groups, args.rounds)
        )
        counts = failed_over(database_url, routes)
    return ApiResult(args, "wrk" if wrk else "httpx", loads, rounds, counts)


# --- report ------------------------------------------------------------------------------


def per_payment_ms(load: pb.LoadResult, group: str) -> float:
    return float(load.cpu[group]["cpu_s"]) / load.ok * 1000 if load.ok else 0.0


def report(result: ApiResult) -> None:
    args = result.args
    print(
        f"\npayments through the API ({args.workers} worker(s), {args.clients} clients,"
        f" {args.duration:g} s each, {result.loadgen}; emulators in their own processes)"
    )
    rows = [("", "payments/s", "p50 / p99 ms", "server", "postgres", "emulators", "busy",
             "answers")]  # fmt: skip
    for name, load in result.loads.items():
        rows.append((
            name, f"{load.rate:.0f}", f"{load.p50_ms:.1f} / {load.p99_ms:.1f}",
            *(f"{per_payment_ms(load, g):.2f}" for g in ("server", "postgres", "emulators")),
            f"{load.cpu['machine_busy_fraction'] * 100:.0f}%",
            " ".join(f"{k}:{v}" for k, v in sorted(load.statuses.items())),
        ))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print("(server, postgres, emulators: CPU ms per payment)")
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    total, once, at_b, at_b_once = result.counts
    print(f"failover path: {once} of {total} payments failed over exactly once (A 503, B paid);")
    print(f"routed path: {at_b_once} of {at_b} payments paid at B in one attempt")

    rounds = result.rounds
    print(f"\nconcurrency 1, {len(rounds['R'])} interleaved rounds          p50 / p90 ms")
    for label, values in (
        ("R  routed payment (B)", rounds["R"]),
        ("F  failover payment (A 503, then B)", rounds["F"]),
        ("cA call to A alone (503)", rounds["cA"]),
        ("cB call to B alone (the second call)", rounds["cB"]),
        ("F - R  added by failover (paired)", rounds.paired("F", "R")),
        ("F - R - cA  failover's own work", rounds.paired("F", "R", "cA")),
    ):
        print(f"  {label:<40} {pb.pct(values, 50):6.2f} / {pb.pct(values, 90):6.2f}")
    own, second = pb.pct(rounds.paired("F", "R", "cA"), 50), pb.pct(rounds["cB"], 50)
    print(
        f"target: failover's own work <= the second gateway call: {own:.2f} ms vs"
        f" {second:.2f} ms (p50), ratio {own / second:.2f}: {verdict(own, second)}"
    )
    cpu = {k: rounds.mean(k) for k in ("R_server", "F_server", "R_postgres", "F_postgres")}
    own_cpu = (
        cpu["F_server"] - cpu["R_server"] - rounds.mean("cA_cpu")
        + cpu["F_postgres"] - cpu["R_postgres"]
    )  # fmt: skip
    print(
        f"CPU ms per payment at c=1 (means): server R {cpu['R_server']:.2f}, F"
        f" {cpu['F_server']:.2f}; postgres R {cpu['R_postgres']:.2f}, F {cpu['F_postgres']:.2f};"
        f" adapter call to A {rounds.mean('cA_cpu'):.2f}, to B {rounds.mean('cB_cpu'):.2f}"
    )
    print(
        f"failover's own CPU (F - R - call A, server + postgres) {own_cpu:.2f} ms vs the second"
        f" call's {rounds.mean('cB_cpu'):.2f} ms: {verdict(own_cpu, rounds.mean('cB_cpu'))}"
    )
    plain, routed, failover = (result.loads[k].rate for k in ("plain", "routed", "failover"))
    if plain and routed:
        print(
            f"payments/s, failover / plain {failover / plain:.2f}, / routed {failover / routed:.2f}"
        )


def verdict(cost: float, bound: float) -> str:
    return "met" if cost <= bound else "NOT met"
