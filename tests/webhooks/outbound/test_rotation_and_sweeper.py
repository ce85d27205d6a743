"""Secret rotation (both signatures during the window, the old one wiped after it) and the
sweeper that finds deliveries no job finished (a lost job, a worker that died mid-send)."""

from __future__ import annotations

from datetime import timedelta

import httpx
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import JobContext
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.models import WebhookEndpoint
from paygate.webhooks.outbound.tasks import (
    SWEEP_GRACE,
    sweep_overdue_deliveries,
    wipe_expired_previous_secrets,
)
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries
from tests.webhooks.outbound.conftest import create_endpoint, due_jobs, run_jobs, send_test
from tests.webhooks.outbound.receiver import Receiver


async def jobs_for(database: Database, delivery_id: str) -> list[int]:
    return [job for job, delivery in await due_jobs(database) if delivery == delivery_id]


async def rotate(
    client: httpx.AsyncClient, tenant: Tenant, endpoint_id: str, **body: object
) -> dict[str, object]:
    response = await client.post(
        f"/api/v1/webhook-endpoints/{endpoint_id}/rotate-secret", json=body, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    result: dict[str, object] = response.json()
    return result


async def test_during_a_rotation_deliveries_carry_both_signatures(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
    jobs: JobContext,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    old = endpoint["signing_secret"]
    rotated = await rotate(client, tenant, endpoint["id"], grace_period_hours=2)
    new = rotated["signing_secret"]
    assert isinstance(new, str)
    assert new != old
    assert new.startswith("whsec_")
    shown = rotated["endpoint"]
    assert isinstance(shown, dict)
    assert shown["secret"]["masked"] == f"whsec_...{new[-4:]}"
    assert shown["secret"]["previous_valid_until"] is not None

    # A receiver still on the old secret and one already on the new one both verify.
    receiver.secrets.extend([old, new])
    delivery_id = await send_test(client, tenant, endpoint["id"])
    assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]
    [got] = receiver.received
    assert len(got.signatures) == 2
    assert set(got.verified_with) == {old, new}

    # The window ends: the old secret signs nothing more, and the sweeper wipes it.
    async with database.transaction() as session:
        row = await session.get(WebhookEndpoint, endpoint["id"])
        assert row is not None
        row.previous_secret_expires_at = utcnow() - timedelta(seconds=1)
    receiver.received.clear()
    delivery_id = await send_test(client, tenant, endpoint["id"])
    assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]
    [got] = receiver.received
    assert got.verified_with == (new,)
    assert len(got.signatures) == 1
    assert await wipe_expired_previous_secrets(database, jobs.keyring) >= 1
    after = await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
    assert after.json()["secret"]["previous_valid_until"] is None

    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=endpoint["id"])]
    assert "webhook_endpoint.secret_rotated" in actions
    assert "webhook_endpoint.previous_secret_wiped" in actions
    for entry in await audit_entries(client, tenant, object_id=endpoint["id"]):
        assert old not in str(entry)
        assert new not in str(entry)


async def test_a_rotation_without_grace_stops_the_old_secret_at_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    old = endpoint["signing_secret"]
    rotated = await rotate(client, tenant, endpoint["id"], grace_period_hours=0)
    receiver.secrets.extend([old, str(rotated["signing_secret"])])
    delivery_id = await send_test(client, tenant, endpoint["id"])
    await run_jobs(database, dispatcher, {delivery_id})
    [got] = receiver.received
    assert got.verified_with == (rotated["signing_secret"],)
    bad = await client.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/rotate-secret",
        json={"grace_period_hours": 500},
        headers=tenant.headers,
    )
    assert bad.status_code == 422


async def test_the_sweeper_picks_up_a_lost_job(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    delivery_id = await send_test(client, tenant, endpoint["id"])
    # The job is lost (say, the queue was restored from an old backup).
    async with database.transaction() as session:
        await session.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'delivery_id' = :id"),
            {"id": delivery_id},
        )
    await sweep_overdue_deliveries(database)
    assert not await jobs_for(database, delivery_id)  # not overdue yet: a job may be slow

    later = utcnow() + SWEEP_GRACE + timedelta(seconds=5)
    await sweep_overdue_deliveries(database, now=later)
    assert len(await jobs_for(database, delivery_id)) == 1
    # One waiting job per delivery, however often the sweeper runs.
    await sweep_overdue_deliveries(database, now=later)
    assert len(await jobs_for(database, delivery_id)) == 1

    assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]
    assert len(receiver.verified()) == 1


async def test_a_worker_that_died_mid_delivery_is_covered_by_the_sweeper(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    """The claim commits before the request; a worker killed then leaves the claim's lease.
    Once it lapses, the sweeper hands the delivery to a new job: sent at most once more."""
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    delivery_id = await send_test(client, tenant, endpoint["id"])
    async with database.transaction() as session:
        await session.execute(
            text("DELETE FROM procrastinate_jobs WHERE args->>'delivery_id' = :id"),
            {"id": delivery_id},
        )
    claim = await dispatcher._claim(delivery_id)  # ... and the worker dies right here
    assert claim is not None
    assert claim.attempt_number == 1
    # Within the lease the delivery is left alone, by jobs and by the sweeper.
    assert await dispatcher.deliver(delivery_id) == "skipped"
    await sweep_overdue_deliveries(database, now=utcnow() + SWEEP_GRACE * 1.5)
    assert not await jobs_for(database, delivery_id)

    after_lease = utcnow() + dispatcher.lease + SWEEP_GRACE + timedelta(seconds=5)
    await sweep_overdue_deliveries(database, now=after_lease)
    assert len(await jobs_for(database, delivery_id)) == 1
    late = Dispatcher(
        dispatcher.database, dispatcher.keyring, dispatcher.settings, clock=lambda: after_lease
    )
    assert await run_jobs(database, late, {delivery_id}) == ["succeeded"]
    assert len(receiver.verified()) == 1
    shown = await client.get(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}",
        headers=tenant.headers,
    )
    assert shown.json()["attempt_count"] == 2  # the lost claim counts as an attempt made
