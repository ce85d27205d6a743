"""Routing benchmark: decisions per second with 50 rules, and payments through the API with
one failover per payment.

Measured in the same run:
  1. the engine alone (`routing.engine.decide`): what a decision costs once its inputs are
     loaded, with 50 rules of which the last one matches (the worst case: every condition
     of every rule is evaluated), 8 gateways, a split and a success-rate rule among them;
  2. the function the payment path calls (`routing.decision.choose`) on PostgreSQL, in one
     transaction per decision: the engine plus its reads (gateways, routing head, policy,
     breakers), as reserve pays for it;
  3. payments/s through a running paygate (bench/routing_api.py, on bench/payments.py's
     helpers): payments.py's plain path (the sandbox gateway named), a routed path (no
     failover) and a failover path (custom gateway A answers 503, B pays: one failover per
     payment), with CPU per payment; then, at concurrency 1 and paired, the latency failover
     adds beside the cost of the second gateway call alone.
Targets (issue 13): at least 20,000 decisions/s for (1); in (3), failover's own work (the
latency it adds beyond the failed call itself) no more than the second gateway call.

Run: .venv/bin/python bench/routing.py [--decisions N] [--duration S] [--skip-api]
(see bench/README.md)
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import signal
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from paygate.gateways.models import Gateway  # noqa: E402
from paygate.routing.engine import (  # noqa: E402
    RoutingInput,
    RuleSet,
    SuccessRate,
    compile_rule,
    decide,
)

GATEWAYS = 8
HARD_DEADLINE_SECONDS = 600  # the whole run, whatever the options
RULES = 50


def gateways() -> dict[str, Gateway]:
    found = {}
    for index in range(GATEWAYS):
        gateway = Gateway(
            id=f"gw_{index}",
            name=f"Gateway {index}",
            enabled=True,
            supported_currencies=["USD", "EUR", "GBP"],
            min_amount=None,
            max_amount=10**9,
            payment_method_types=["card"],
        )
        found[gateway.id] = gateway
    return found


def rule_set() -> RuleSet:
    rules = []
    for index in range(RULES - 1):
        # Rules that never match a USD card payment from the US, but evaluate conditions.
        conditions: dict[str, Any] = {
            "currencies": ["EUR", "GBP"],
            "amount_min": 100 * index,
            "customer_countries": ["DE", "FR"],
            "metadata": {"segment": f"s{index}"},
        }
        action: dict[str, Any] = {"type": "priority", "gateway_ids": ["gw_1", "gw_2"]}
        if index % 10 == 3:
            action = {
                "type": "split",
                "split": [
                    {"gateway_id": "gw_3", "percent": 60},
                    {"gateway_id": "gw_4", "percent": 40},
                ],
            }
        rules.append(
            compile_rule(f"rr_{index}", f"rule {index}", index + 1, True, conditions, action)
        )
    last = compile_rule(
        "rr_last",
        "success rate",
        RULES,
        True,
        {"currencies": ["USD"], "payment_method_types": ["card"]},
        {
            "type": "success_rate",
            "gateway_ids": ["gw_5", "gw_6", "gw_7"],
            "exploration_percent": 10,
            "min_attempts": 20,
        },
    )
    rules.append(last)
    return RuleSet(1, tuple(rules), ("gw_0", "gw_1"))


def engine_rate(count: int) -> float:
    found = gateways()
    rules = rule_set()
    by_priority = list(found)
    rates = {"gw_5": SuccessRate(90, 100), "gw_6": SuccessRate(95, 100), "gw_7": SuccessRate(5, 10)}
    payments = [
        RoutingInput(
            amount=1250,
            currency="USD",
            customer_country="US",
            metadata={"segment": "none"},
            payment_id=f"pay_{secrets.token_hex(8)}",
        )
        for _ in range(count)
    ]
    started = time.perf_counter()
    for payment in payments:
        decision = decide(rules, payment, found, by_priority=by_priority, rates=rates)
    elapsed = time.perf_counter() - started
    assert decision.rule is not None
    assert decision.rule.id == "rr_last"
    return count / elapsed


async def choose_rate(database_url: str, count: int) -> float:
    """`routing.decision.choose` per decision, on a fresh database with one company."""
    import psycopg
    from alembic import command

    from paygate.db import Database, libpq_url
    from paygate.kit.ids import new_id
    from paygate.migrations_check import alembic_config
    from paygate.routing.decision import choose

    admin = libpq_url(database_url)
    name = f"paygate_bench_routing_{secrets.token_hex(4)}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin.rsplit("/", 1)[0] + f"/{name}"
    try:
        command.upgrade(alembic_config(url), "head")
        company = new_id("cmp")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("INSERT INTO companies (id, name) VALUES (%s, 'Bench')", (company,))
            for index in range(GATEWAYS):
                conn.execute(
                    "INSERT INTO gateways (id, company_id, name, gateway_type, environment,"
                    " enabled, public_config, secret_hints, key_id, wrapped_data_key,"
                    " secret_ciphertext, supported_currencies, priority, payment_method_types)"
                    " VALUES (%s, %s, %s, 'sandbox', 'test', true, '{}', '{}', 'k', '', '',"
                    " ARRAY['USD'], %s, ARRAY['card'])",
                    (new_id("gw"), company, f"G{index}", index),
                )
        database = Database(url)
        payment = RoutingInput(amount=1250, currency="USD", payment_id="pay_bench")
        started = time.perf_counter()
        for _ in range(count):
            async with database.transaction() as session:
                await choose(session, company, payment)
        elapsed = time.perf_counter() - started
        await database.dispose()
        return count / elapsed
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument(
        "--database-url",
        default="postgresql://postgres@127.0.0.1:5432/postgres",
        help="PostgreSQL URL to connect to for CREATE/DROP DATABASE",
    )
    parser.add_argument("--skip-database", action="store_true", help="the engine only")
    parser.add_argument("--skip-api", action="store_true", help="no payments through the API")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn workers (API part)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent connections")
    parser.add_argument("--duration", type=float, default=5, help="seconds of each load run")
    parser.add_argument("--warmup", type=float, default=2, help="warm-up seconds per path")
    parser.add_argument("--rounds", type=int, default=200, help="paired rounds at c=1")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "httpx"], default="auto")
    parser.add_argument("--profile", help="py-spy the server during each load run into PATH.*")
    parser.add_argument("--profile-format", default="raw", help="py-spy format: raw, flamegraph")
    parser.add_argument(
        "--profile-gil", action="store_true", help="py-spy: only samples holding the GIL"
    )
    parser.add_argument("--py-spy", default=str(Path(sys.executable).parent / "py-spy"))
    args = parser.parse_args()
    if urlsplit(args.database_url).hostname not in ("127.0.0.1", "localhost", None):
        parser.error("the benchmark only talks to 127.0.0.1")
    args.duration, args.warmup = min(args.duration, 60), min(args.warmup, 30)
    args.rounds = min(args.rounds, 2000)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("bench")))
    signal.alarm(HARD_DEADLINE_SECONDS)
    engine = engine_rate(args.decisions)
    print(f"engine, {RULES} rules: {engine:,.0f} decisions/s (target 20,000)")
    if args.skip_database:
        return
    count = max(200, args.decisions // 50)
    rate = asyncio.run(choose_rate(args.database_url, count))
    print(f"choose() with its reads, one transaction each: {rate:,.0f} decisions/s")
    if not args.skip_api:
        from bench import routing_api

        routing_api.report(routing_api.run(args))


if __name__ == "__main__":
    main()
