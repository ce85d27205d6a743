"""One settle path: however paygate learns an outcome, it writes the same rows; reserving
stays exact under concurrency; a crowd of clients on one process's pool is served."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.adapters.base import GatewayPaymentStatus, PaymentResult
from paygate.kit.jobs_context import JobContext
from paygate.payments.context import Caller
from paygate.payments.service import PaymentService
from paygate.payments.signals import PaymentChange, payment_settled
from paygate.payments.tasks import sweep_open_payments
from paygate.security.audit import SYSTEM
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.payments.helpers import create_invoice, get_invoice, pay, sandbox_gateway
from tests.payments.test_payments_api import ACTION_CARD, SLOW_CARD
from tests.statements import statements_sent


async def rows_of(database: Database, payment_id: str) -> dict[str, Any]:
    """What the database holds about a settled payment, without ids and times."""
    async with database.transaction() as session:
        payment = (
            await session.execute(
                text(
                    "SELECT p.status, p.amount, p.failure_code, p.next_action IS NULL AS no_action,"
                    " i.status AS invoice_status, i.amount_paid, i.amount_reserved,"
                    " i.paid_at IS NOT NULL AS paid_at_set"
                    " FROM payments p JOIN invoices i ON i.id = p.invoice_id WHERE p.id = :id"
                ),
                {"id": payment_id},
            )
        ).one()
        attempts = (
            await session.execute(
                text(
                    "SELECT status, error_code, failure_kind, finished_at IS NOT NULL AS finished"
                    " FROM payment_attempts WHERE payment_id = :id"
                ),
                {"id": payment_id},
            )
        ).all()
        last_event = (
            await session.execute(
                text(
                    "SELECT to_status FROM payment_events WHERE payment_id = :id"
                    " ORDER BY id DESC LIMIT 1"
                ),
                {"id": payment_id},
            )
        ).scalar_one()
    return {
        "payment": tuple(payment),
        "attempts": [tuple(a) for a in attempts],
        "last_event": last_event,
    }


@pytest.fixture
def changes() -> Iterator[list[PaymentChange]]:
    seen: list[PaymentChange] = []

    async def listen(session: AsyncSession, change: PaymentChange) -> None:
        seen.append(change)

    payment_settled.connect(listen)
    try:
        yield seen
    finally:
        payment_settled.disconnect(listen)


async def test_every_way_of_learning_an_outcome_writes_the_same_rows(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    jobs: JobContext,
    settings: Settings,
    changes: list[PaymentChange],
) -> None:
    await sandbox_gateway(client, tenant)
    await sandbox_gateway(client, other_tenant)
    seen: dict[str, dict[str, Any]] = {}

    # The gateway's own answer to the API call.
    invoice = await create_invoice(client, tenant)
    answered = await pay(client, tenant, invoice["id"])
    seen["answer"] = await rows_of(database, answered["id"])

    # The customer back from the gateway's page.
    invoice = await create_invoice(client, tenant)
    redirected = await pay(client, tenant, invoice["id"], payment_method=ACTION_CARD)
    await client.get(f"/payments/{redirected['id']}/return", params={"outcome": "approved"})
    seen["return"] = await rows_of(database, redirected["id"])

    # Asked again after an unknown outcome, by a person and by the sweeper.
    invoice = await create_invoice(client, tenant)
    synced = await pay(client, tenant, invoice["id"], payment_method=SLOW_CARD)
    await client.post(f"/api/v1/payments/{synced['id']}/sync", headers=tenant.headers)
    seen["sync"] = await rows_of(database, synced["id"])

    invoice = await create_invoice(client, tenant)
    swept = await pay(client, tenant, invoice["id"], payment_method=SLOW_CARD)
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE payments SET updated_at = now() - interval '5 minutes' WHERE id = :id"),
            {"id": swept["id"]},
        )
    await sweep_open_payments()
    seen["sweeper"] = await rows_of(database, swept["id"])

    # The gateway telling paygate (what a webhook does).
    invoice = await create_invoice(client, tenant)
    reported = await pay(client, tenant, invoice["id"], payment_method=SLOW_CARD)
    service = PaymentService(
        database, jobs.keyring, settings, Caller(tenant.company_id, SYSTEM, None)
    )
    answer = PaymentResult("sbx_reported", GatewayPaymentStatus.SUCCEEDED, 12_500, "usd")
    await service.report(reported["id"], answer, cause="the gateway reported it")
    # Told twice (a redelivered webhook): the first answer stands, nothing moves again.
    await service.report(reported["id"], answer, cause="the gateway reported it")
    seen["report"] = await rows_of(database, reported["id"])

    expected = {
        "payment": ("succeeded", 12_500, None, True, "paid", 12_500, 0, True),
        "attempts": [("succeeded", None, None, True)],
        "last_event": "succeeded",
    }
    assert seen == dict.fromkeys(seen, expected)
    paid = [c for c in changes if c.company_id == tenant.company_id and c.invoice_paid]
    assert len(paid) == 5  # one announcement per payment, however it settled
    assert {c.to_status for c in paid} == {"succeeded"}


async def test_a_reviewer_decision_goes_through_the_settle_path(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, changes: list[PaymentChange]
) -> None:
    from tests.payments.test_payments_api import MISMATCH_CARD

    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method=MISMATCH_CARD)
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_paid"] == 0
    await client.post(
        f"/api/v1/payments/{payment['id']}/review",
        json={"outcome": "failed", "note": "Nothing was collected"},
        headers=tenant.headers,
    )
    rows = await rows_of(database, payment["id"])
    # Refused: the reserved amount is released, so the invoice can be paid again.
    assert rows["payment"][0] == "failed"
    assert rows["payment"][4:7] == ("open", 0, 0)
    assert [c.to_status for c in changes if c.payment_id == payment["id"]] == [
        "requires_review",
        "failed",
    ]
    again = await pay(client, tenant, invoice["id"])
    assert again["status"] == "succeeded"


async def test_concurrent_payments_on_one_invoice_never_reserve_more_than_is_due(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=10_000, allow_partial_payments=True)
    answers = await asyncio.gather(
        *(
            client.post(
                f"/api/v1/invoices/{invoice['id']}/payments",
                json={"amount": 1_000, "payment_method": SLOW_CARD},
                headers={**tenant.headers, "Idempotency-Key": f"split-{n}"},
            )
            for n in range(14)
        )
    )
    taken = [a.json() for a in answers if a.status_code == 201]
    assert len(taken) == 10  # ten payments of 10.00 reserve the whole 100.00
    assert sorted(a.status_code for a in answers if a.status_code != 201) == [409] * 4
    async with database.transaction() as session:
        reserved = (
            await session.execute(
                text("SELECT amount_reserved FROM invoices WHERE id = :id"), {"id": invoice["id"]}
            )
        ).scalar_one()
    assert reserved == 10_000
    for payment in taken:
        await client.post(f"/api/v1/payments/{payment['id']}/sync", headers=tenant.headers)
    settled = await get_invoice(client, tenant, invoice["id"])
    assert (settled["status"], settled["amount_paid"]) == ("paid", 10_000)
    rows = await rows_of(database, taken[0]["id"])
    assert rows["payment"][6] == 0  # nothing reserved any more


async def test_64_clients_at_once_are_all_served_by_one_process(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    """Every request holds one pooled connection at a time (authentication gives its own
    back before the payment takes one), so a crowd larger than the pool waits its turn
    instead of waiting on itself until the pool times out."""
    await sandbox_gateway(client, tenant)
    invoices = [await create_invoice(client, tenant) for _ in range(64)]
    pool = database.engine.pool
    assert pool.size() + database.engine.pool._max_overflow < 64  # type: ignore[attr-defined]
    answers = await asyncio.wait_for(
        asyncio.gather(*(pay(client, tenant, invoice["id"]) for invoice in invoices)),
        timeout=120,
    )
    assert [a["status"] for a in answers] == ["succeeded"] * 64


async def test_an_api_payment_takes_few_round_trips_and_settles_in_one_write(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    """Round trips are the payment path's cost: authentication reads once, reserve and
    settle each write their rows with one statement. A regression shows up here first."""
    await sandbox_gateway(client, tenant)
    warm = await create_invoice(client, tenant)
    invoice = await create_invoice(client, tenant)
    await pay(client, tenant, warm["id"])
    with statements_sent() as statements:
        paid = await pay(client, tenant, invoice["id"])

    assert paid["status"] == "succeeded"
    settle_writes = [s for s in statements if "INSERT INTO payment_events" in s]
    assert len(settle_writes) == 2  # reserve's statement and settle's
    settle = settle_writes[1]
    for row in ("INSERT INTO gateway_calls", "UPDATE payments", "UPDATE payment_attempts"):
        assert row in settle
    assert "UPDATE invoices" in settle
    assert "UPDATE idempotency_keys" in settle  # the stored answer, with the rest
    # The answer's history is built from what the request wrote, not read back: it is
    # what the payment's own page shows afterwards, to the microsecond.
    assert not [s for s in statements if s.startswith("SELECT payment_events")]
    shown = await client.get(f"/api/v1/payments/{paid['id']}", headers=tenant.headers)
    assert shown.json()["events"] == paid["events"]
    assert [e["to_status"] for e in paid["events"]] == ["processing", "succeeded"]
    assert len(statements) <= 9, "\n".join(statements)
    status, amount, _, _, invoice_status, amount_paid, amount_reserved, paid_at_set = (
        await rows_of(database, paid["id"])
    )["payment"]
    assert (status, invoice_status, amount_paid, amount_reserved, paid_at_set) == (
        "succeeded",
        "paid",
        amount,
        0,
        True,
    )
