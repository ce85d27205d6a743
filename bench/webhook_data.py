"""bench/webhooks.py's data: a company with a Stripe gateway, payments waiting for the
gateway and the Stripe events that settle them, signed as Stripe signs; and what paygate
did with them, read from its database."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/payments.py's helpers

from payments import HOST, analyze, free_port, register, seed_invoices, stripe_gateway

from paygate.kit.ids import new_id  # bench/payments.py put src/ on the path

AMOUNT = 12_500
# PGAPPNAME of paygate's processes: their PostgreSQL backends' CPU is counted apart.
SERVER_APP = "bench-paygate-server"
WORKER_APP = "bench-paygate-worker"


# --- data --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    event_id: str
    body: bytes


@dataclass
class Setup:
    base: str
    gateway_id: str
    secret: str
    template_invoice: str


def set_up(base: str) -> Setup:
    with httpx.Client(base_url=base, timeout=30) as client:
        owner = register(client, "Bench Webhooks")
        register(client, "Other Company")  # a second tenant, as every scenario keeps
        secret = "whsec_" + secrets.token_urlsafe(32)
        # Nothing listens at its API address: processing finds every payment by its
        # PaymentIntent id and never calls Stripe; the job worker's scheduled health check,
        # if one comes due, reaches nothing off this machine.
        nowhere = f"http://{HOST}:{free_port()}"
        gateway_id = stripe_gateway(client, owner, nowhere, secret, name="Stripe")
        invoice = client.post(
            "/api/v1/invoices",
            headers=owner,
            json={
                "customer": {"name": "Jane Buyer", "email": "jane@buyer.example.com"},
                "currency": "USD",
                "line_items": [{"description": "Consulting", "quantity": 1, "unit_amount": AMOUNT}],
            },
        )
        invoice.raise_for_status()
    return Setup(base, gateway_id, secret, invoice.json()["id"])


def seed_payments(database_url: str, setup: Setup, count: int) -> list[Event]:
    """`count` invoices, each with a Stripe payment in `processing` (its attempt too, the
    invoice's amount reserved, as paygate leaves them), and the Stripe event that says it
    succeeded."""
    invoices = seed_invoices(database_url, setup.template_invoice, count)
    payment_ids = [new_id("pay") for _ in invoices]
    attempt_ids = [new_id("att") for _ in invoices]
    intents = ["pi_" + secrets.token_hex(12) for _ in invoices]
    with psycopg.connect(database_url) as conn:
        conn.execute(
            "UPDATE invoices SET amount_reserved = amount_total WHERE id = ANY(%s)", (invoices,)
        )
        conn.execute(
            "INSERT INTO payments (id, company_id, invoice_id, gateway_id, status, amount,"
            " currency, amount_refunded, flow, payment_method_type, payment_method,"
            " gateway_reference)"
            " SELECT n.pay, i.company_id, i.id, %s, 'processing', i.amount_total, i.currency,"
            " 0, 'direct', 'card', 'pm_card_visa', n.intent"
            " FROM invoices i JOIN unnest(%s::text[], %s::text[], %s::text[])"
            " AS n(pay, intent, invoice) ON i.id = n.invoice",
            (setup.gateway_id, payment_ids, intents, invoices),
        )
        conn.execute(
            "INSERT INTO payment_attempts (id, company_id, payment_id, gateway_id, status,"
            " gateway_reference)"
            " SELECT n.att, p.company_id, p.id, p.gateway_id, 'processing', p.gateway_reference"
            " FROM payments p JOIN unnest(%s::text[], %s::text[]) AS n(att, pay) ON p.id = n.pay",
            (attempt_ids, payment_ids),
        )
    analyze(database_url)
    return [
        stripe_event(payment, attempt, intent)
        for payment, attempt, intent in zip(payment_ids, attempt_ids, intents, strict=True)
    ]


def stripe_event(payment_id: str, attempt_id: str, intent: str) -> Event:
    """A `payment_intent.succeeded` event shaped as Stripe sends it (about 1.5 KB)."""
    event_id = "evt_" + secrets.token_hex(12)
    created = int(time.time())
    charge = "ch_" + secrets.token_hex(12)
    event = {
        "id": event_id,
        "object": "event",
        "api_version": "2024-06-20",
        "created": created,
        "data": {
            "object": {
                "id": intent,
                "object": "payment_intent",
                "amount": AMOUNT,
                "amount_capturable": 0,
                "amount_received": AMOUNT,
                "capture_method": "automatic_async",
                "client_secret": f"{intent}_secret_{secrets.token_hex(12)}",
                "confirmation_method": "automatic",
                "created": created - 3,
                "currency": "usd",
                "latest_charge": charge,
                "livemode": False,
                "metadata": {"paygate_payment": payment_id, "paygate_attempt": attempt_id},
                "payment_method": "pm_" + secrets.token_hex(12),
                "payment_method_options": {
                    "card": {"request_three_d_secure": "automatic", "installments": None}
                },
                "payment_method_types": ["card"],
                "status": "succeeded",
                "last_payment_error": None,
                "next_action": None,
                "description": None,
                "receipt_email": None,
                "shipping": None,
            }
        },
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": "req_" + secrets.token_hex(7), "idempotency_key": attempt_id},
        "type": "payment_intent.succeeded",
    }
    return Event(event_id, json.dumps(event, separators=(",", ":")).encode())


def signed(events: list[Event], secret: str) -> list[str]:
    """Load items: Stripe's signature of each body at this second, a tab, the body."""
    timestamp = str(int(time.time()))
    items = []
    for event in events:
        v1 = hmac.new(secret.encode(), f"{timestamp}.".encode() + event.body, hashlib.sha256)
        items.append(f"t={timestamp},v1={v1.hexdigest()}\t{event.body.decode()}")
    return items


# --- database readings -------------------------------------------------------------------


def backend_pids(database_url: str) -> dict[str, list[int]]:
    """PostgreSQL backends of the bench database by application name (PGAPPNAME of the
    process that opened them): the server's apart from the job worker's."""
    found: dict[str, list[int]] = {}
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT application_name, pid FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        for name, pid in rows:
            found.setdefault(str(name), []).append(int(pid))
    return found


def postgres_groups(database_url: str) -> dict[str, list[int]]:
    backends = backend_pids(database_url)
    return {
        "postgres: server": backends.get(SERVER_APP, []),
        "postgres: worker": backends.get(WORKER_APP, []),
    }


def stored_event_ids(database_url: str) -> set[str]:
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT provider_event_id FROM webhook_events WHERE verified")
        return {row[0] for row in rows}


def wait_for_processing(database_url: str, limit_s: float) -> tuple[int, float]:
    """Wait until no event is pending (or `limit_s`); (still pending, seconds waited)."""
    started = time.monotonic()
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute("SELECT count(*) FROM webhook_events WHERE status = 'pending'")
            pending = int(row.fetchone()[0])  # type: ignore[index]
            waited = time.monotonic() - started
            if pending == 0 or waited >= limit_s:
                return pending, waited
            time.sleep(0.2)


@dataclass
class Lag:
    ms: list[float] = field(default_factory=list)
    received: int = 0  # events received in the measured run
    processed_in_run: int = 0  # of them, processed before the run ended
    pending: int = 0  # still pending when the bench stopped waiting
    drain_s: float = 0.0


def lag_of_run(database_url: str, start: datetime, end: datetime) -> Lag:
    """Receipt to the payment's move to succeeded, for the events received in [start, end)."""
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM p.updated_at - e.received_at) * 1000,"
            " e.processed_at < %s"
            " FROM webhook_events e JOIN payments p ON p.id = e.payment_id"
            " WHERE e.verified AND e.received_at >= %s AND e.received_at < %s"
            " AND p.status = 'succeeded'",
            (end, start, end),
        ).fetchall()
        received = conn.execute(
            "SELECT count(*) FROM webhook_events WHERE verified"
            " AND received_at >= %s AND received_at < %s",
            (start, end),
        ).fetchone()
    return Lag(
        ms=[float(r[0]) for r in rows],
        received=int(received[0]) if received else 0,
        processed_in_run=sum(1 for r in rows if r[1]),
    )
