"""Failover between two custom-gateway emulators, A and B: one charge in total, always.

A is the session's emulator, B a second one; routing sends payments to A first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import text, update

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.payments import failover
from paygate.payments.retry_queue import DELAYS, PaymentRetry
from paygate.payments.retry_tasks import retry_queued, sweep_due_retries
from paygate.payments.tasks import sweep_open_payments
from paygate.routing.models import GatewayBreaker
from tests.conftest import Tenant
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.fakes.servers import closed_port_url, serve_asgi
from tests.payments.helpers import create_invoice, custom, get_invoice
from tests.routing.helpers import add_rule, priority

HARD_DECLINE = "tok_4000000000000002"  # card_declined, hard
SOFT_DECLINE = "tok_4000000000000119"  # processing_error, soft


@pytest.fixture(scope="module")
def _second_server() -> Iterator[CustomGatewayEmulator]:
    emulator = CustomGatewayEmulator()
    with serve_asgi(emulator.app) as url:
        emulator.base_url = url
        yield emulator


@pytest.fixture
def emulator_b(_second_server: CustomGatewayEmulator) -> Iterator[CustomGatewayEmulator]:
    _second_server.reset()
    yield _second_server
    _second_server.reset()


async def a_then_b(
    client: httpx.AsyncClient,
    tenant: Tenant,
    a: CustomGatewayEmulator,
    b: CustomGatewayEmulator,
    *,
    a_url: str | None = None,
) -> tuple[str, str]:
    first = await custom(client, tenant, "A", a_url or a.base_url, a.api_key)
    second = await custom(client, tenant, "B", b.base_url, b.api_key)
    await add_rule(client, tenant, "A, then B", priority(first["id"], second["id"]))
    return first["id"], second["id"]


async def pay_api(
    client: httpx.AsyncClient, tenant: Tenant, invoice_id: str, token: str = "tok_visa", **body: Any
) -> dict[str, Any]:
    response = await client.post(
        f"/api/v1/invoices/{invoice_id}/payments",
        json={"payment_method": token, **body},
        headers={**tenant.headers, "Idempotency-Key": f"k-{utcnow().timestamp()}-{invoice_id}"},
    )
    assert response.status_code == 201, response.text
    payment: dict[str, Any] = response.json()
    return payment


def made(emulator: CustomGatewayEmulator, payment_id: str) -> list[dict[str, Any]]:
    return [p for p in emulator.state.payments.values() if p["reference"] == payment_id]


def charges(payment_id: str, *emulators: CustomGatewayEmulator) -> int:
    return sum(p["status"] == "succeeded" for e in emulators for p in made(e, payment_id))


def posts(emulator: CustomGatewayEmulator) -> int:
    return sum(r.method == "POST" and r.path == "/payments" for r in emulator.requests)


async def test_a_down_gateway_fails_over_to_the_next_with_one_charge(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
    database: Database,
) -> None:
    a_id, b_id = await a_then_b(
        client, tenant, custom_gateway_emulator, emulator_b, a_url=closed_port_url()
    )
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"])
    assert payment["status"] == "succeeded"
    assert payment["gateway_id"] == b_id
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1
    first, second = payment["attempts"]
    assert (first["gateway_id"], first["status"], first["failure_kind"]) == (
        a_id,
        "failed",
        "technical",
    )
    assert first["error_code"] == "gateway_unavailable"
    assert first["latency_ms"] is not None
    assert (second["gateway_id"], second["status"], second["failure_kind"]) == (
        b_id,
        "succeeded",
        None,
    )
    assert any("failing over to B" in e["cause"] for e in payment["events"])
    # The answer's path was built from what the request wrote: the payment's own view,
    # read afterwards, shows the same attempts and events.
    shown = await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)
    assert shown.json()["attempts"] == payment["attempts"]
    assert shown.json()["events"] == payment["events"]
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "paid"
    async with database.transaction() as session:
        breaker = await session.get(GatewayBreaker, a_id)
    assert breaker is not None
    assert breaker.consecutive_failures == 1
    # The other company never sees the payment nor its attempts.
    hidden = await client.get(f"/api/v1/payments/{payment['id']}", headers=other_tenant.headers)
    assert hidden.status_code == 404


async def test_a_gateway_answering_503_fails_over_with_one_charge(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    a_id, b_id = await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    custom_gateway_emulator.knobs.fail_status = 503
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"])
    assert payment["status"] == "succeeded"
    assert [a["gateway_id"] for a in payment["attempts"]] == [a_id, b_id]
    shown = await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)
    assert (shown.json()["attempts"], shown.json()["events"]) == (
        payment["attempts"],
        payment["events"],
    )
    assert posts(custom_gateway_emulator) == 1
    assert made(custom_gateway_emulator, payment["id"]) == []
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1
    # Asked again, nothing is charged again.
    synced = await client.post(f"/api/v1/payments/{payment['id']}/sync", headers=tenant.headers)
    assert synced.json()["status"] == "succeeded"
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1


async def test_a_hard_decline_is_never_tried_elsewhere(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"], HARD_DECLINE)
    assert payment["status"] == "failed"
    assert payment["failure"]["code"] == "card_declined"
    assert len(payment["attempts"]) == 1
    assert emulator_b.requests == []


async def test_a_soft_decline_goes_on_only_when_the_policy_says_so(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    a_id, b_id = await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    invoice = await create_invoice(client, tenant)
    # The default policy retries processing_error at the next gateway (which declines too).
    tried = await pay_api(client, tenant, invoice["id"], SOFT_DECLINE)
    assert tried["status"] == "failed"
    assert [a["gateway_id"] for a in tried["attempts"]] == [a_id, b_id]
    assert [a["failure_kind"] for a in tried["attempts"]] == ["decline", "decline"]
    policy = {
        "max_attempts": 3,
        "retry_decline_codes": [],
        "failover_customer_present": True,
        "failover_api": True,
        "breaker_failures": 5,
        "breaker_cooldown_seconds": 60,
    }
    saved = await client.put("/api/v1/retry-policy", json=policy, headers=tenant.headers)
    assert saved.status_code == 200
    again = await pay_api(client, tenant, invoice["id"], SOFT_DECLINE)
    assert [a["gateway_id"] for a in again["attempts"]] == [a_id]
    assert posts(emulator_b) == 1


async def test_an_unknown_outcome_is_resolved_at_its_gateway_first(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    a_id, _ = await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    custom_gateway_emulator.knobs.fail_status = 500
    custom_gateway_emulator.knobs.fail_times = 1
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"])
    assert payment["status"] == "processing"
    assert payment["failure"]["code"] == "outcome_unknown"
    assert emulator_b.requests == []
    synced = await client.post(f"/api/v1/payments/{payment['id']}/sync", headers=tenant.headers)
    body = synced.json()
    assert body["status"] == "succeeded"
    assert body["gateway_id"] == a_id
    assert [a["gateway_id"] for a in body["attempts"]] == [a_id]
    assert emulator_b.requests == []
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1


async def test_max_attempts_and_the_failover_switch_are_kept(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    custom_gateway_emulator.knobs.fail_status = 503
    policy = {
        "max_attempts": 3,
        "retry_decline_codes": ["processing_error"],
        "failover_customer_present": True,
        "failover_api": False,
        "breaker_failures": 5,
        "breaker_cooldown_seconds": 60,
    }
    await client.put("/api/v1/retry-policy", json=policy, headers=tenant.headers)
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"])
    # No failover for API payments: A said 503, the outcome stays open for the sweeper.
    assert payment["status"] == "processing"
    assert len(payment["attempts"]) == 1
    assert emulator_b.requests == []
    await client.put(
        "/api/v1/retry-policy",
        json={**policy, "max_attempts": 1, "failover_api": True},
        headers=tenant.headers,
    )
    other = await create_invoice(client, tenant)
    capped = await pay_api(client, tenant, other["id"])
    assert len(capped["attempts"]) == 1
    assert emulator_b.requests == []


async def test_a_named_gateway_that_cannot_be_reached_is_queued_and_retried(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
    database: Database,
    jobs: JobContext,
) -> None:
    a_id, _ = await a_then_b(
        client, tenant, custom_gateway_emulator, emulator_b, a_url=closed_port_url()
    )
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"], gateway_id=a_id)
    assert payment["status"] == "processing"
    assert payment["failure"]["code"] == "retry_scheduled"
    assert "tries again at" in payment["failure"]["message"]
    assert emulator_b.requests == []
    async with database.transaction() as session:
        row = await session.get(PaymentRetry, payment["id"])
        assert row is not None
        assert row.pinned_gateway_id == a_id
        jobs_queued = (
            await session.execute(
                text(
                    "SELECT count(*) FROM procrastinate_jobs WHERE task_name = :task"
                    " AND args->>'payment_id' = :payment AND scheduled_at > now()"
                ),
                {"task": "payments_retries:retry_queued_payment", "payment": payment["id"]},
            )
        ).scalar_one()
    assert jobs_queued == 1
    # The open-payment sweeper leaves it to the queue.
    await sweep_open_payments(older_than=timedelta(0))
    swept = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert swept["failure"]["code"] == "retry_scheduled"
    assert len(swept["attempts"]) == 1
    # Not due yet: nothing happens.
    assert await retry_queued(payment["id"]) == "not due"
    # A comes back (its address fixed); the retry is due.
    fixed = await client.patch(
        f"/api/v1/gateways/{a_id}",
        json={"configuration": {"base_url": custom_gateway_emulator.base_url}},
        headers=tenant.headers,
    )
    assert fixed.status_code == 200, fixed.text
    async with database.transaction() as session:
        await session.execute(
            update(PaymentRetry)
            .where(PaymentRetry.payment_id == payment["id"])
            .values(next_attempt_at=utcnow() - timedelta(seconds=1))
        )
    assert await retry_queued(payment["id"]) == "succeeded"
    done = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert done["status"] == "succeeded"
    assert [a["gateway_id"] for a in done["attempts"]] == [a_id, a_id]
    assert [a["status"] for a in done["attempts"]] == ["failed", "succeeded"]
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1
    assert await retry_queued(payment["id"]) == "not queued"


async def test_a_worker_killed_mid_failover_leaves_one_charge(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
    jobs: JobContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, b_id = await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    custom_gateway_emulator.knobs.fail_status = 503
    real = failover.attempt_once
    calls = 0

    async def dies_before_b(config: Any, request: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            # The failover to B is committed; the process dies before B answers (B did
            # charge: the answer is lost with the process).
            await real(config, request)
            raise SystemExit("killed")
        return await real(config, request)

    monkeypatch.setattr(failover, "attempt_once", dies_before_b)
    invoice = await create_invoice(client, tenant)
    with pytest.raises(SystemExit):
        await client.post(
            f"/api/v1/invoices/{invoice['id']}/payments",
            json={"payment_method": "tok_visa"},
            headers={**tenant.headers, "Idempotency-Key": "killed-mid-failover"},
        )
    monkeypatch.setattr(failover, "attempt_once", real)
    listed = (
        await client.get(
            "/api/v1/payments", params={"invoice_id": invoice["id"]}, headers=tenant.headers
        )
    ).json()["data"]
    assert len(listed) == 1
    payment = listed[0]
    assert payment["status"] == "processing"
    assert payment["gateway_id"] == b_id
    # The sweeper asks B about the attempt it holds (same idempotency key): one charge.
    custom_gateway_emulator.knobs.reset()
    assert await sweep_open_payments(older_than=timedelta(0)) >= 1
    done = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert done["status"] == "succeeded"
    assert charges(payment["id"], custom_gateway_emulator, emulator_b) == 1
    assert made(custom_gateway_emulator, payment["id"]) == []


async def test_a_queued_payment_fails_when_its_retries_run_out(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
    database: Database,
    jobs: JobContext,
) -> None:
    a_id, _ = await a_then_b(
        client, tenant, custom_gateway_emulator, emulator_b, a_url=closed_port_url()
    )
    invoice = await create_invoice(client, tenant)
    payment = await pay_api(client, tenant, invoice["id"], gateway_id=a_id)
    assert payment["failure"]["code"] == "retry_scheduled"
    # The last retry's job was lost with its worker: the sweeper runs it, and it fails.
    async with database.transaction() as session:
        await session.execute(
            update(PaymentRetry)
            .where(PaymentRetry.payment_id == payment["id"])
            .values(retries_done=len(DELAYS) - 1, next_attempt_at=utcnow() - timedelta(hours=1))
        )
    assert await sweep_due_retries() >= 1
    done = (await client.get(f"/api/v1/payments/{payment['id']}", headers=tenant.headers)).json()
    assert done["status"] == "failed"
    assert [a["status"] for a in done["attempts"]] == ["failed", "failed"]
    assert (await get_invoice(client, tenant, invoice["id"]))["amount_due"] == invoice["amount_due"]
    async with database.transaction() as session:
        assert await session.get(PaymentRetry, payment["id"]) is None
    assert emulator_b.requests == []


async def test_a_gateway_disabled_during_the_first_call_is_not_failed_over_to(
    client: httpx.AsyncClient,
    tenant: Tenant,
    custom_gateway_emulator: CustomGatewayEmulator,
    emulator_b: CustomGatewayEmulator,
) -> None:
    """The failover reads the next gateway as it is now (with the payment's lock), not as
    routing saw it when the payment was reserved."""
    a_id, b_id = await a_then_b(client, tenant, custom_gateway_emulator, emulator_b)
    custom_gateway_emulator.knobs.fail_status = 503
    custom_gateway_emulator.knobs.delay_seconds = 1.0
    invoice = await create_invoice(client, tenant)
    paying = asyncio.create_task(pay_api(client, tenant, invoice["id"]))
    await asyncio.sleep(0.3)  # A is still answering
    disabled = await client.post(f"/api/v1/gateways/{b_id}/disable", headers=tenant.headers)
    assert disabled.status_code == 200
    payment = await asyncio.wait_for(paying, timeout=30)
    assert [a["gateway_id"] for a in payment["attempts"]] == [a_id]
    assert made(emulator_b, payment["id"]) == []
