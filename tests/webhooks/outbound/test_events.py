"""Where events come from: a sandbox payment through the API produces exactly one
payment.succeeded and one invoice.paid delivery; refunds and declines theirs; gateway
health changes map to gateway.down / gateway.up through enqueue_event."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

import httpx
from sqlalchemy import select

from paygate.db import Database
from paygate.gateways.adapters.sandbox import sandbox_card_for_decline
from paygate.kit.clock import utcnow
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.enqueue import enqueue_event
from paygate.webhooks.outbound.models import WebhookDelivery
from paygate.webhooks.outbound.subscriptions import (
    on_gateway_status_changed,
    on_payment_disputed,
)
from tests.conftest import Tenant
from tests.payments.helpers import SUCCESS_CARD, create_invoice, pay, sandbox_gateway
from tests.payments.test_payments_api import refund
from tests.webhooks.outbound.conftest import create_endpoint, due_jobs, run_jobs
from tests.webhooks.outbound.receiver import Receiver


async def deliveries_for(database: Database, endpoint_id: str) -> list[WebhookDelivery]:
    async with database.transaction() as session:
        rows = await session.execute(
            select(WebhookDelivery)
            .where(WebhookDelivery.endpoint_id == endpoint_id)
            .order_by(WebhookDelivery.id)
        )
        return list(rows.scalars())


async def deliver_all(
    database: Database, dispatcher: Dispatcher, endpoint_id: str
) -> list[WebhookDelivery]:
    found = await deliveries_for(database, endpoint_id)
    await run_jobs(database, dispatcher, {d.id for d in found})
    return found


async def test_a_sandbox_payment_sends_one_payment_succeeded_and_one_invoice_paid(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url("shop"))
    theirs = await create_endpoint(client, other_tenant, receiver.url("theirs"))
    receiver.secrets.append(endpoint["signing_secret"])
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=12_500)
    payment = await pay(client, tenant, invoice["id"])

    found = await deliver_all(database, dispatcher, endpoint["id"])
    assert sorted(d.event_type for d in found) == ["invoice.paid", "payment.succeeded"]
    assert await deliveries_for(database, theirs["id"]) == []
    events = {r.event["type"]: r for r in receiver.verified()}
    assert sorted(events) == ["invoice.paid", "payment.succeeded"]
    assert len(receiver.received) == 2

    succeeded = events["payment.succeeded"].event["data"]
    assert succeeded["id"] == payment["id"]
    assert (succeeded["amount"], succeeded["currency"], succeeded["status"]) == (
        12_500,
        "USD",
        "succeeded",
    )
    assert succeeded["invoice_id"] == invoice["id"]
    paid = events["invoice.paid"].event["data"]
    assert (paid["id"], paid["amount_paid"], paid["amount_total"]) == (
        invoice["id"],
        12_500,
        12_500,
    )
    assert paid["number"] == invoice["number"]
    for received in receiver.received:
        assert SUCCESS_CARD not in received.body.decode()
        assert endpoint["signing_secret"] not in received.body.decode()
    # Each event is one message: the webhook-ids differ.
    assert len({r.headers["webhook-id"] for r in receiver.received}) == 2


async def test_refunds_and_declines_send_their_events(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(
        client,
        tenant,
        receiver.url(),
        ["payment.failed", "payment.refunded", "refund.succeeded"],
    )
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=10_000)
    declined = sandbox_card_for_decline("insufficient_funds").number
    await pay(client, tenant, invoice["id"], payment_method=declined)
    payment = await pay(client, tenant, invoice["id"])
    assert (await refund(client, tenant, payment["id"], amount=2_500)).status_code == 201
    assert (await refund(client, tenant, payment["id"])).status_code == 201

    found = await deliver_all(database, dispatcher, endpoint["id"])
    assert [d.event_type for d in found] == [
        "payment.failed",
        "refund.succeeded",
        "payment.refunded",
        "refund.succeeded",
        "payment.refunded",
    ]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for received in receiver.received:
        by_type.setdefault(received.event["type"], []).append(received.event["data"])
    [failed] = by_type["payment.failed"]
    assert failed["failure_code"] == "insufficient_funds"
    assert failed["failure_kind"] == "decline"
    assert declined not in str(failed)
    refunded = sorted(by_type["payment.refunded"], key=lambda d: d["amount_refunded"])
    assert [
        (d["refund"]["amount"], d["amount_refunded"], d["fully_refunded"]) for d in refunded
    ] == [
        (2_500, 2_500, False),
        (7_500, 10_000, True),
    ]
    assert sorted(d["amount"] for d in by_type["refund.succeeded"]) == [2_500, 7_500]


@dataclass(frozen=True)
class HealthChange:
    """Shaped like monitoring's GatewayStatusChange (monitoring/signals.py)."""

    company_id: str
    gateway_id: str
    gateway_name: str
    gateway_type: str
    environment: str
    event: Literal["gateway.down", "gateway.up"]
    from_status: str
    to_status: str
    incident_id: str
    cause: str
    started_at: datetime
    ended_at: datetime | None
    duration_seconds: int | None
    occurred_at: datetime


async def test_gateway_health_changes_become_gateway_down_and_up(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url(), ["gateway.down", "gateway.up"])
    gateway = await sandbox_gateway(client, tenant)
    began = utcnow() - timedelta(minutes=7)
    down = HealthChange(
        tenant.company_id,
        gateway["id"],
        "Sandbox",
        "sandbox",
        "test",
        "gateway.down",
        "up",
        "down",
        "inc_1",
        "The gateway did not answer within 2 s.",
        began,
        None,
        None,
        began,
    )
    up = HealthChange(
        **{
            **down.__dict__,
            "event": "gateway.up",
            "from_status": "down",
            "to_status": "up",
            "ended_at": began + timedelta(minutes=7),
            "duration_seconds": 420,
            "occurred_at": began + timedelta(minutes=7),
        }
    )
    async with database.transaction() as session:
        await on_gateway_status_changed(session, down)
        await on_gateway_status_changed(session, up)
    await deliver_all(database, dispatcher, endpoint["id"])
    events = [r.event for r in receiver.received]
    assert [e["type"] for e in events] == ["gateway.down", "gateway.up"]
    assert events[0]["data"]["id"] == gateway["id"]
    assert events[0]["data"]["status"] == "down"
    assert events[0]["data"]["cause"] == "The gateway did not answer within 2 s."
    assert "up_since" not in events[0]["data"]
    assert events[1]["data"]["downtime_seconds"] == 420
    assert events[1]["timestamp"] > events[0]["timestamp"]


async def test_an_event_rolled_back_with_its_change_is_never_sent(
    client: httpx.AsyncClient, tenant: Tenant, receiver: Receiver, database: Database
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    try:
        async with database.transaction() as session:
            ids = await enqueue_event(session, tenant.company_id, "payment.disputed", {"id": "p"})
            assert len(ids) == 1
            raise RuntimeError("the change fails after the event was written")
    except RuntimeError:
        pass
    assert await deliveries_for(database, endpoint["id"]) == []
    assert ids[0] not in {d for _, d in await due_jobs(database)}


@dataclass(frozen=True)
class Dispute:
    """Shaped like inbound processing's DisputeChange (payments/gateway_reports.py)."""

    company_id: str
    payment_id: str
    invoice_id: str
    gateway_id: str
    dispute_reference: str
    from_status: str | None
    to_status: str
    amount: int
    currency: str
    reason: str | None
    occurred_at: datetime


async def test_a_dispute_becomes_payment_disputed(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url(), ["payment.disputed"])
    receiver.secrets.append(endpoint["signing_secret"])
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=5_000)
    payment = await pay(client, tenant, invoice["id"])
    opened = Dispute(
        tenant.company_id,
        payment["id"],
        invoice["id"],
        payment["gateway_id"],
        "dp_123",
        None,
        "open",
        5_000,
        "USD",
        "fraudulent",
        utcnow(),
    )
    async with database.transaction() as session:
        await on_payment_disputed(session, opened)
    await deliver_all(database, dispatcher, endpoint["id"])
    [got] = receiver.verified()
    assert got.event["type"] == "payment.disputed"
    assert got.event["data"]["id"] == payment["id"]
    assert got.event["data"]["dispute"] == {
        "reference": "dp_123",
        "status": "open",
        "previous_status": None,
        "amount": 5_000,
        "currency": "USD",
        "reason": "fraudulent",
    }
