"""Paying invoices through the API with the sandbox gateway: every outcome, idempotency,
unknown outcomes, refunds, and two companies in every scenario."""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, text

from paygate.db import Database
from paygate.gateways.adapters.sandbox import SANDBOX_CARDS, SandboxOutcome
from paygate.kit.jobs_context import JobContext
from paygate.payments.models import Payment
from paygate.payments.tasks import sweep_open_payments
from tests.conftest import Tenant
from tests.payments.helpers import SUCCESS_CARD, create_invoice, get_invoice, pay, sandbox_gateway

SLOW_CARD = next(c.number for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.UNKNOWN)
MISMATCH_CARD = next(c.number for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.AMOUNT_MISMATCH)
ACTION_CARD = next(c.number for c in SANDBOX_CARDS if c.outcome is SandboxOutcome.REQUIRES_ACTION)
DECLINES = [(c.number, c.decline_code) for c in SANDBOX_CARDS if c.decline_code]


async def count_payments(database: Database, invoice_id: str) -> int:
    async with database.transaction() as session:
        statement = (
            select(func.count()).select_from(Payment).where(Payment.invoice_id == invoice_id)
        )
        return int((await session.execute(statement)).scalar_one())


async def test_a_successful_payment_pays_the_invoice(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    gateway = await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"])
    assert payment["id"].startswith("pay_")
    assert (payment["status"], payment["amount"], payment["currency"]) == (
        "succeeded",
        12_500,
        "USD",
    )
    assert payment["gateway_id"] == gateway["id"]
    assert [(e["from_status"], e["to_status"]) for e in payment["events"]] == [
        (None, "processing"),
        ("processing", "succeeded"),
    ]
    assert payment["attempts"][0]["status"] == "succeeded"
    paid = await get_invoice(client, tenant, invoice["id"])
    assert (paid["status"], paid["amount_paid"], paid["amount_due"]) == ("paid", 12_500, 0)

    calls = (
        await client.get(
            "/api/v1/gateway-calls", params={"payment_id": payment["id"]}, headers=tenant.headers
        )
    ).json()
    assert [(c["operation"], c["outcome"]) for c in calls] == [("create_payment", "ok")]
    assert SUCCESS_CARD not in str(calls)

    # The other company sees none of it.
    for path in (f"/api/v1/payments/{payment['id']}", f"/api/v1/invoices/{invoice['id']}"):
        assert (await client.get(path, headers=other_tenant.headers)).status_code == 404
    assert (await client.get("/api/v1/payments", headers=other_tenant.headers)).json()["data"] == []
    assert (await client.get("/api/v1/gateway-calls", headers=other_tenant.headers)).json() == []
    await pay(client, other_tenant, invoice["id"], expect=404)
    # A paid invoice takes no more payments.
    await pay(client, tenant, invoice["id"], expect=409)


@pytest.mark.parametrize(("card", "code"), DECLINES)
async def test_declines_are_normalized_and_can_be_retried(
    client: httpx.AsyncClient, tenant: Tenant, card: str, code: str
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    failed = await pay(client, tenant, invoice["id"], payment_method=card)
    assert failed["status"] == "failed"
    assert failed["failure"]["code"] == code
    assert failed["failure"]["gateway_code"] == f"sandbox_{code}"
    assert failed["failure"]["message"]
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"
    retried = await pay(client, tenant, invoice["id"])
    assert retried["status"] == "succeeded"


async def test_the_same_idempotency_key_charges_once(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    key = secrets.token_hex(8)
    first = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": SUCCESS_CARD},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    again = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": SUCCESS_CARD},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["idempotent-replayed"] == "true"
    assert await count_payments(database, invoice["id"]) == 1
    different = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": "4000000000000002"},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert different.status_code == 422
    assert different.json()["type"].endswith("/idempotency-key-reused")
    missing = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": SUCCESS_CARD},
        headers=tenant.headers,
    )
    assert missing.status_code == 400


async def test_a_key_used_on_another_companys_invoice_claims_nothing(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    """The key is claimed and the invoice locked in one statement: an invoice the caller's
    company does not have answers 404 and leaves the key free."""
    await sandbox_gateway(client, tenant)
    theirs = await create_invoice(client, other_tenant)
    mine = await create_invoice(client, tenant)
    key = secrets.token_hex(8)
    refused = await client.post(
        f"/api/v1/invoices/{theirs['id']}/payments",
        json={"payment_method": SUCCESS_CARD},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert refused.status_code == 404
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert await count_payments(database, theirs["id"]) == 0
    paid = await client.post(
        f"/api/v1/invoices/{mine['id']}/payments",
        json={"payment_method": SUCCESS_CARD},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert paid.status_code == 201
    assert "idempotent-replayed" not in paid.headers
    assert paid.json()["status"] == "succeeded"


async def test_a_key_in_use_is_409_and_keys_are_per_company(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    await sandbox_gateway(client, tenant)
    await sandbox_gateway(client, other_tenant)
    invoice = await create_invoice(client, tenant)
    theirs = await create_invoice(client, other_tenant)
    key = secrets.token_hex(8)
    slow = asyncio.create_task(
        pay(client, tenant, invoice["id"], key=key, payment_method=SLOW_CARD)
    )
    await asyncio.sleep(0.5)
    busy = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": SLOW_CARD},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert busy.status_code == 409
    assert busy.json()["type"].endswith("/idempotency-in-progress")
    # The same key means nothing to another company.
    assert (await pay(client, other_tenant, theirs["id"], key=key))["status"] == "succeeded"
    await slow
    assert await count_payments(database, invoice["id"]) == 1


async def test_an_unknown_outcome_stays_processing_until_the_gateway_is_asked(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method=SLOW_CARD)
    assert payment["status"] == "processing"  # a timeout after sending is not a failure
    assert "unknown" in payment["failure"]["message"]
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"
    # Nothing may be charged twice meanwhile: the amount is reserved.
    await pay(client, tenant, invoice["id"], expect=409)
    synced = await client.post(f"/api/v1/payments/{payment['id']}/sync", headers=tenant.headers)
    assert synced.json()["status"] == "succeeded"
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    operations = [
        c["operation"]
        for c in (
            await client.get(
                "/api/v1/gateway-calls",
                params={"payment_id": payment["id"]},
                headers=tenant.headers,
            )
        ).json()
    ]
    assert operations == ["fetch_payment", "create_payment"]


async def test_the_sweeper_resolves_payments_left_open(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, jobs: JobContext
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method=SLOW_CARD)
    async with database.transaction() as session:
        await session.execute(
            text("UPDATE payments SET updated_at = now() - interval '5 minutes' WHERE id = :id"),
            {"id": payment["id"]},
        )
    assert await sweep_open_payments() >= 1
    swept = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert swept["status"] == "succeeded"
    assert swept["events"][-1]["cause"].startswith("the sweeper asked the gateway")


async def test_an_answer_for_another_amount_goes_to_review(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"], payment_method=MISMATCH_CARD)
    assert payment["status"] == "requires_review"
    assert payment["review_reason"] == "The gateway answered 12499 USD for a payment of 12500 USD."
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_paid"] == 0
    # It may have been collected: the invoice cannot be paid again meanwhile.
    await pay(client, tenant, invoice["id"], expect=409)
    decide = f"/api/v1/payments/{payment['id']}/review"
    decided = await client.post(
        decide,
        json={"outcome": "succeeded", "note": "Dashboard shows 125.00 collected"},
        headers=tenant.headers,
    )
    assert decided.json()["status"] == "succeeded"
    assert (
        decided.json()["events"][-1]["cause"]
        == f"reviewed by {tenant.email}: Dashboard shows 125.00 collected"
    )
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    again = await client.post(
        decide, json={"outcome": "failed", "note": "x"}, headers=tenant.headers
    )
    assert again.status_code == 409


async def test_a_customer_action_is_finished_by_asking_the_gateway(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(
        client,
        tenant,
        invoice["id"],
        payment_method=ACTION_CARD,
        return_url="https://shop.example.com/done",
    )
    assert payment["status"] == "requires_action"
    assert payment["next_action"]["type"] == "redirect"
    assert "/sandbox/authorize/" in payment["next_action"]["redirect_url"]
    back = await client.get(f"/payments/{payment['id']}/return", params={"outcome": "approved"})
    assert back.status_code == 303
    assert (
        back.headers["location"]
        == f"https://shop.example.com/done?payment_id={payment['id']}&status=succeeded"
    )
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"

    declined_invoice = await create_invoice(client, tenant)
    second = await pay(client, tenant, declined_invoice["id"], payment_method=ACTION_CARD)
    back = await client.get(f"/payments/{second['id']}/return", params={"outcome": "failed"})
    assert back.headers["location"].startswith("/pay/")
    final = (await client.get(f"/api/v1/payments/{second['id']}", headers=tenant.headers)).json()
    assert (final["status"], final["failure"]["code"]) == ("failed", "authentication_failed")


async def test_partial_payments_only_when_enabled(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    strict = await create_invoice(client, tenant, amount=10_000)
    refused = await pay(client, tenant, strict["id"], amount=4_000, expect=422)
    assert refused["errors"][0]["code"] == "partial_not_allowed"
    flexible = await create_invoice(client, tenant, amount=10_000, allow_partial_payments=True)
    await pay(client, tenant, flexible["id"], amount=4_000)
    assert (await get_invoice(client, tenant, flexible["id"]))["status"] == "partially_paid"
    too_much = await pay(client, tenant, flexible["id"], amount=7_000, expect=422)
    assert too_much["errors"][0]["field"] == "amount"
    rest = await pay(client, tenant, flexible["id"])
    assert rest["amount"] == 6_000
    final = await get_invoice(client, tenant, flexible["id"])
    assert (final["status"], final["amount_paid"], final["amount_due"]) == ("paid", 10_000, 0)


async def test_routing_offers_only_fitting_gateways(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    euro_only = await sandbox_gateway(client, tenant, name="EUR", supported_currencies=["EUR"])
    capped = await sandbox_gateway(client, tenant, name="Small", max_amount=1_000, priority=1)
    main = await sandbox_gateway(client, tenant, name="Main", priority=50)
    invoice = await create_invoice(client, tenant, amount=5_000)
    payment = await pay(client, tenant, invoice["id"])
    assert payment["gateway_id"] == main["id"]  # the capped one is higher priority but too small
    other = await create_invoice(client, tenant, amount=5_000)
    wrong = await pay(client, tenant, other["id"], gateway_id=euro_only["id"], expect=422)
    assert wrong["errors"][0]["field"] == "gateway_id"
    await client.post(f"/api/v1/gateways/{main['id']}/disable", headers=tenant.headers)
    none_left = await pay(client, tenant, other["id"], expect=422)
    assert none_left["type"].endswith("/no-eligible-gateway")
    assert capped["id"] != main["id"]


async def refund(
    client: httpx.AsyncClient, tenant: Tenant, payment_id: str, **body: Any
) -> httpx.Response:
    return await client.post(
        f"/api/v1/payments/{payment_id}/refunds",
        json=body,
        headers={**tenant.headers, "Idempotency-Key": secrets.token_hex(8)},
    )


async def test_partial_and_full_refunds(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=10_000)
    payment = await pay(client, tenant, invoice["id"])
    assert (await refund(client, other_tenant, payment["id"], amount=100)).status_code == 404
    partial = await refund(
        client, tenant, payment["id"], amount=2_500, reason="requested_by_customer"
    )
    assert partial.status_code == 201
    assert (partial.json()["status"], partial.json()["amount"]) == ("succeeded", 2_500)
    rest = await refund(client, tenant, payment["id"])
    assert rest.json()["amount"] == 7_500
    assert (await refund(client, tenant, payment["id"], amount=1)).status_code == 409
    final = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert final["amount_refunded"] == 10_000
    assert [r["amount"] for r in final["refunds"]] == [2_500, 7_500]
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_refunded"] == 10_000


async def test_concurrent_refunds_never_exceed_the_payment(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=10_000)
    payment = await pay(client, tenant, invoice["id"])
    answers = await asyncio.gather(
        *(refund(client, tenant, payment["id"], amount=4_000) for _ in range(6))
    )
    statuses = sorted(a.status_code for a in answers)
    assert statuses == [201, 201, 422, 422, 422, 422]
    final = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert final["amount_refunded"] == 8_000
    over = await refund(client, tenant, payment["id"], amount=2_001)
    assert over.status_code == 422


async def test_a_customer_who_abandons_a_customer_action_can_pay_again(
    client: httpx.AsyncClient, tenant: Tenant
) -> None:
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant)
    abandoned = await pay(client, tenant, invoice["id"], payment_method=ACTION_CARD)
    assert abandoned["status"] == "requires_action"
    again = await pay(client, tenant, invoice["id"])
    assert again["status"] == "succeeded"
    old = (await client.get(f"/api/v1/payments/{abandoned['id']}", headers=tenant.headers)).json()
    assert old["status"] == "canceled"
    assert old["events"][-1]["cause"].startswith("the customer started another payment")
    # Coming back to the old one later changes nothing: it was withdrawn.
    await client.get(f"/payments/{abandoned['id']}/return", params={"outcome": "approved"})
    final = await get_invoice(client, tenant, invoice["id"])
    assert (final["amount_paid"], final["status"]) == (12_500, "paid")


async def test_a_refund_left_pending_without_an_answer_is_settled_by_sync(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant, database: Database
) -> None:
    # The sandbox has no slow refund: the refund's settle step "never ran" is made by hand
    # (pending, no gateway reference, nothing counted), as after a timeout or a crash.
    await sandbox_gateway(client, tenant)
    invoice = await create_invoice(client, tenant, amount=10_000)
    payment = await pay(client, tenant, invoice["id"])
    made = await refund(client, tenant, payment["id"], amount=4_000)
    assert made.status_code == 201, made.text
    refund_id = made.json()["id"]
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE refunds SET status = 'pending', gateway_reference = NULL,"
                " failure_message = 'The gateway did not answer within 2 s. The outcome is"
                " unknown; paygate will ask again.' WHERE id = :id"
            ),
            {"id": refund_id},
        )
        for table, row in (("payments", payment["id"]), ("invoices", invoice["id"])):
            await session.execute(
                text(f"UPDATE {table} SET amount_refunded = amount_refunded - 4000 WHERE id = :id"),
                {"id": row},
            )
    path = f"/api/v1/refunds/{refund_id}/sync"
    assert (await client.post(path, headers=other_tenant.headers)).status_code == 404
    missing = await client.post("/api/v1/refunds/re_nosuchrefund/sync", headers=tenant.headers)
    assert missing.status_code == 404
    # The amount is still reserved while the outcome is unknown.
    assert (await refund(client, tenant, payment["id"], amount=6_001)).status_code == 422

    synced = await client.post(path, headers=tenant.headers)
    assert synced.status_code == 200, synced.text
    assert (synced.json()["status"], synced.json()["failure_message"]) == ("succeeded", None)
    again = await client.post(path, headers=tenant.headers)
    assert again.json() == synced.json()
    final = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert final["amount_refunded"] == 4_000
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_refunded"] == 4_000
    calls = (
        await client.get(
            "/api/v1/gateway-calls", params={"payment_id": payment["id"]}, headers=tenant.headers
        )
    ).json()
    assert [c["operation"] for c in calls if c["refund_id"] == refund_id] == [
        "fetch_refund",
        "refund_payment",
    ]


async def test_keys_are_forgotten_after_their_24_hours(
    client: httpx.AsyncClient, tenant: Tenant, database: Database, jobs: JobContext
) -> None:
    from paygate.payments.tasks import purge_idempotency_keys_task

    await sandbox_gateway(client, tenant)
    first = await create_invoice(client, tenant)
    second = await create_invoice(client, tenant)
    key = secrets.token_hex(8)
    await pay(client, tenant, first["id"], key=key)
    await pay(client, tenant, second["id"], key=key, expect=422)  # same key, other request
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 second'"
                " WHERE key = :k"
            ),
            {"k": key},
        )
    await purge_idempotency_keys_task(timestamp=0)
    assert (await pay(client, tenant, second["id"], key=key))["status"] == "succeeded"
