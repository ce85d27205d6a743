"""The floors: the unavoidable writes of a payment, and of a received webhook, behind
FastAPI, nothing else.

`bench/payments.py` and `bench/webhooks.py` serve this beside paygate, on the same
PostgreSQL database, pool size and worker count, behind the same load generator, and print
paygate's figures as a ratio to this one's (SQLAlchemy Core on psycopg, as paygate).

- POST /floor/invoices/{id}/payments: lock the invoice, insert the payment, its attempt and
  its event, update the invoice, commit. No authentication, no idempotency key, no gateway,
  no audit entry, no gateway-call log.
- POST /floor/webhooks/{gateway_id}: insert the raw body into `bench_webhook_bodies` (made
  by bench/webhooks.py before it starts this app), commit, answer 200. No signature, no
  duplicate check, no headers kept, no job.

    python bench/floor_app.py --port 8100 --workers 2   (FLOOR_DATABASE_URL=postgresql://...)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from sqlalchemy import text

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from paygate.db import create_engine
from paygate.kit.ids import new_id

LOCK = text(
    "SELECT company_id, currency, amount_total - amount_paid AS due"
    " FROM invoices WHERE id = :id FOR UPDATE"
)
PAYMENT = text(
    "INSERT INTO payments (id, company_id, invoice_id, gateway_id, status, amount, currency,"
    " amount_refunded, flow, payment_method_type)"
    " VALUES (:id, :company_id, :invoice_id, :gateway_id, 'succeeded', :amount, :currency, 0,"
    " 'direct', 'card')"
)
ATTEMPT = text(
    "INSERT INTO payment_attempts (id, company_id, payment_id, gateway_id, status)"
    " VALUES (:id, :company_id, :payment_id, :gateway_id, 'succeeded')"
)
EVENT = text(
    "INSERT INTO payment_events (id, company_id, payment_id, from_status, to_status, cause)"
    " VALUES (:id, :company_id, :payment_id, NULL, 'succeeded', 'floor')"
)
PAID = text(
    "UPDATE invoices SET amount_paid = amount_paid + :amount, status = 'paid', paid_at = now(),"
    " updated_at = now() WHERE id = :id"
)

WEBHOOK = text(
    "INSERT INTO bench_webhook_bodies (id, gateway_id, body) VALUES (:id, :gateway_id, :body)"
)


def create_app() -> FastAPI:
    engine = create_engine(os.environ["FLOOR_DATABASE_URL"])  # paygate's pool, as the issue asks
    app = FastAPI()

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/floor/invoices/{invoice_id}/payments", status_code=201)
    async def pay(invoice_id: str, body: dict[str, Any]) -> dict[str, Any]:
        gateway_id = str(body["gateway_id"])
        async with engine.begin() as conn:
            invoice = (await conn.execute(LOCK, {"id": invoice_id})).one_or_none()
            if invoice is None or invoice.due <= 0:
                raise HTTPException(409, "not payable")
            payment_id = new_id("pay")
            common = {"company_id": invoice.company_id, "payment_id": payment_id}
            await conn.execute(
                PAYMENT,
                {
                    "id": payment_id,
                    "company_id": invoice.company_id,
                    "invoice_id": invoice_id,
                    "gateway_id": gateway_id,
                    "amount": invoice.due,
                    "currency": invoice.currency,
                },
            )
            await conn.execute(ATTEMPT, {"id": new_id("att"), "gateway_id": gateway_id, **common})
            await conn.execute(EVENT, {"id": new_id("pev"), **common})
            await conn.execute(PAID, {"id": invoice_id, "amount": invoice.due})
        return {"id": payment_id, "status": "succeeded", "amount": invoice.due}

    @app.post("/floor/webhooks/{gateway_id}")
    async def receive(gateway_id: str, request: Request) -> dict[str, Any]:
        body = await request.body()
        event_id = new_id("evt")
        async with engine.begin() as conn:
            await conn.execute(WEBHOOK, {"id": event_id, "gateway_id": gateway_id, "body": body})
        # paygate's answer, so one load script reads both.
        return {"received": True, "id": event_id, "duplicate": False}

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description="serve the floor app")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from paygate.server import serve_workers

    # The same server setup as `paygate serve --workers N`: a SO_REUSEPORT socket per worker.
    serve_workers(args.host, args.port, args.workers, app="floor_app:create_app")


if __name__ == "__main__":
    main()
