"""Processing received events through the one settle path (custom gateway emulator):
duplicates once, out of order never backwards, mismatches to review, unknown objects
kept as unmatched, refunds paygate made and ones the gateway made, disputes, and retries
with backoff until failed."""

from __future__ import annotations

import asyncio
import copy
from datetime import timedelta

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.payments.gateway_reports import DisputeStatus, dispute_marks
from paygate.payments.signals import PaymentChange, payment_settled
from paygate.webhooks.inbound.models import WebhookEvent
from paygate.webhooks.inbound.processing import MAX_ATTEMPTS
from paygate.webhooks.inbound.tasks import sweep_due_events
from tests.webhooks.inbound.helpers import Scene


async def _stored_count(scene: Scene) -> int:
    async with scene.database.transaction() as session:
        statement = select(func.count()).where(WebhookEvent.gateway_id == scene.gateway["id"])
        return int((await session.execute(statement)).scalar_one())


async def _dispute_status(scene: Scene) -> DisputeStatus:
    async with scene.database.transaction() as session:
        marks = await dispute_marks(session, scene.tenant.company_id, [scene.payment["id"]])
    return marks[scene.payment["id"]].status


async def test_duplicates_even_concurrent_are_stored_and_processed_once(scene: Scene) -> None:
    scene.emulator.settle(scene.reference, "succeeded")
    delivery = scene.emulator.outbox[-1]
    answers = await asyncio.gather(*(scene.deliver(delivery) for _ in range(6)))
    assert [a.status_code for a in answers] == [200] * 6
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    assert sorted(a.json()["duplicate"] for a in answers) == [False] + [True] * 5
    # A retry later, re-signed with a fresh timestamp, is the same event.
    again = scene.emulator.sign_event(delivery.event)
    assert (await scene.deliver(again)).json() == {
        "received": True,
        "id": ids.pop(),
        "duplicate": True,
    }
    assert await _stored_count(scene) == 1
    assert await scene.process() == ["processed"]
    after = await scene.payment_now()
    assert after["status"] == "succeeded"
    assert [e["to_status"] for e in after["events"]].count("succeeded") == 1


async def test_out_of_order_events_never_move_a_payment_backwards(scene: Scene) -> None:
    emulator = scene.emulator
    processing = emulator.sign_event(
        {
            "id": "evt_early_processing",
            "type": "payment.processing",
            "created_at": "2025-01-31T12:00:00Z",
            "data": {**emulator.state.payments[scene.reference], "status": "processing"},
        }
    )
    emulator.settle(scene.reference, "succeeded")
    # The later event arrives first ...
    assert (await scene.deliver(emulator.outbox[-1])).status_code == 200
    await scene.process()
    # ... then the earlier one, and a contradicting failure.
    failed = copy.deepcopy(emulator.outbox[-1].event)
    failed |= {"id": "evt_late_failed", "type": "payment.failed"}
    failed["data"] |= {"status": "failed", "decline_code": "card_declined"}
    for late in (processing, emulator.sign_event(failed)):
        assert (await scene.deliver(late)).status_code == 200
    assert await scene.process() == ["processed", "processed"]
    assert (await scene.payment_now())["status"] == "succeeded"


async def test_an_amount_or_currency_mismatch_goes_to_review(scene: Scene) -> None:
    scene.emulator.settle(scene.reference, "succeeded")
    mismatched = copy.deepcopy(scene.emulator.outbox[-1].event)
    mismatched["data"]["amount"] = scene.payment["amount"] - 100
    response = await scene.deliver(scene.emulator.sign_event(mismatched))
    await scene.process()
    after = await scene.payment_now()
    assert after["status"] == "requires_review"
    assert "12400" in (after["review_reason"] or "")
    assert (await scene.event(response.json()["id"]))["status"] == "processed"


async def test_events_about_unknown_objects_are_kept_as_unmatched(scene: Scene) -> None:
    stranger = {
        "id": "evt_stranger",
        "type": "payment.succeeded",
        "created_at": "2025-01-31T12:00:00Z",
        "data": {"id": "pay_unknown", "status": "succeeded", "amount": 5, "currency": "USD"},
    }
    response = await scene.deliver(scene.emulator.sign_event(stranger))
    assert await scene.process() == ["unmatched"]
    seen = await scene.event(response.json()["id"])
    assert seen["status"] == "unmatched"
    assert "pay_unknown" in seen["outcome"]
    ignored = {**stranger, "id": "evt_other_type", "type": "account.updated"}
    await scene.deliver(scene.emulator.sign_event(ignored))
    assert await scene.process() == ["ignored"]
    assert (await scene.payment_now())["status"] == "processing"


async def test_refunds_paygate_made_and_the_gateway_made_settle_once(scene: Scene) -> None:
    emulator = scene.emulator
    await scene.succeed()
    # paygate's own refund, left pending by the gateway, settled by its webhook.
    emulator.refund_status = "pending"
    refund = await scene.client.post(
        f"/api/v1/payments/{scene.payment['id']}/refunds",
        json={"amount": 2_500},
        headers={**scene.tenant.headers, "Idempotency-Key": "refund-1"},
    )
    assert refund.status_code == 201, refund.text
    assert refund.json()["status"] == "pending"
    gateway_refund = next(iter(emulator.state.refunds))
    emulator.settle_refund(gateway_refund, "succeeded")
    await scene.deliver(emulator.outbox[-1])
    # A refund made in the gateway's dashboard: paygate learns it from the webhook.
    emulator.refund_at_gateway(scene.reference, 1_000)
    await scene.deliver(emulator.outbox[-1])
    assert await scene.process() == ["processed", "processed"]
    after = await scene.payment_now()
    assert after["amount_refunded"] == 3_500
    assert sorted((r["amount"], r["status"]) for r in after["refunds"]) == [
        (1_000, "succeeded"),
        (2_500, "succeeded"),
    ]
    # The same gateway refund reported again (another event id) is not counted twice.
    emulator.queue_webhook("refund.succeeded", emulator.state.refunds[gateway_refund])
    await scene.deliver(emulator.outbox[-1])
    await scene.process()
    assert (await scene.payment_now())["amount_refunded"] == 3_500


async def test_a_refund_before_its_payment_succeeded_retries_with_backoff_then_fails(
    scene: Scene,
) -> None:
    early = scene.emulator.sign_event(
        {
            "id": "evt_refund_first",
            "type": "refund.succeeded",
            "created_at": "2025-01-31T12:00:00Z",
            "data": {
                "id": "re_gw_early",
                "payment_id": scene.reference,
                "status": "succeeded",
                "amount": 100,
                "currency": "USD",
            },
        }
    )
    stored = (await scene.deliver(early)).json()["id"]
    assert await scene.process() == ["pending"]
    first = await scene.event(stored)
    assert first["attempts"] == 1
    assert first["next_attempt_at"] is not None
    assert "retrying in 30 s" in first["outcome"]
    for _ in range(MAX_ATTEMPTS - 1):
        async with scene.database.transaction() as session:
            await session.execute(
                text("UPDATE webhook_events SET next_attempt_at = :t WHERE id = :id"),
                {"t": utcnow() - timedelta(seconds=1), "id": stored},
            )
        assert await sweep_due_events() >= 1
    last = await scene.event(stored)
    assert last["status"] == "failed"
    assert last["attempts"] == MAX_ATTEMPTS
    assert last["next_attempt_at"] is None
    assert [a["trigger"] for a in last["history"]] == ["received"] + ["retry"] * (MAX_ATTEMPTS - 1)
    # After the payment succeeds, a replay applies it.
    await scene.succeed()
    replayed = await scene.client.post(
        f"/api/v1/webhook-events/{stored}/replay", headers=scene.tenant.headers
    )
    assert replayed.status_code == 202, replayed.text
    assert await scene.process() == ["processed"]
    assert (await scene.payment_now())["amount_refunded"] == 100


async def test_disputes_mark_the_payment_and_never_reopen_after_closing(scene: Scene) -> None:
    emulator = scene.emulator
    await scene.succeed()
    opened = emulator.dispute(scene.reference, "open", dispute_id="dp_1")
    await scene.deliver(opened)
    await scene.process()
    assert await _dispute_status(scene) is DisputeStatus.OPEN
    lost = emulator.dispute(scene.reference, "lost", dispute_id="dp_1")
    await scene.deliver(lost)
    # The "opened" event again, delivered late under another id: older, so ignored.
    stale = copy.deepcopy(opened.event) | {"id": "evt_stale_open"}
    await scene.deliver(emulator.sign_event(stale))
    await scene.process()
    assert await _dispute_status(scene) is DisputeStatus.LOST
    audit = await scene.client.get(
        "/api/v1/audit-log",
        params={"object_id": scene.payment["id"]},
        headers=scene.tenant.headers,
    )
    actions = [e["action"] for e in audit.json()["data"]]
    assert "payment.disputed" in actions
    assert "payment.dispute_updated" in actions


async def test_a_run_that_breaks_after_settling_began_keeps_nothing_and_retries(
    scene: Scene,
) -> None:
    """Processing is one transaction: a run that fails halfway (here a listener of the
    settle announcement) leaves the payment and invoice as they were, and its attempt and
    backoff are still recorded."""

    async def broken(session: AsyncSession, change: PaymentChange) -> None:
        raise RuntimeError("a listener broke")

    scene.emulator.settle(scene.reference, "succeeded")
    stored = (await scene.deliver(scene.emulator.outbox[-1])).json()["id"]
    payment_settled.connect(broken)
    try:
        assert await scene.process() == ["pending"]
    finally:
        payment_settled.disconnect(broken)
    payment = await scene.payment_now()
    assert payment["status"] == "processing"
    assert [e["to_status"] for e in payment["events"]] == ["processing"]
    invoice = await scene.client.get(
        f"/api/v1/invoices/{payment['invoice_id']}", headers=scene.tenant.headers
    )
    assert (invoice.json()["status"], invoice.json()["amount_paid"]) == ("open", 0)
    event = await scene.event(stored)
    assert (event["status"], event["attempts"]) == ("pending", 1)
    assert [(a["result"], a["detail"]) for a in event["history"]] == [
        ("error", "processing stopped with RuntimeError")
    ]
    # The retry, once due, applies it.
    async with scene.database.transaction() as session:
        await session.execute(
            text("UPDATE webhook_events SET next_attempt_at = :t WHERE id = :id"),
            {"t": utcnow() - timedelta(seconds=1), "id": stored},
        )
    assert await sweep_due_events() == 1
    assert (await scene.payment_now())["status"] == "succeeded"
    assert [a["result"] for a in (await scene.event(stored))["history"]] == ["error", "processed"]
