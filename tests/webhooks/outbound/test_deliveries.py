"""Deliveries to a real receiver on 127.0.0.1 that verifies them with `standardwebhooks`:
the Standard Webhooks headers, retries after a 500 and a timeout on Svix's schedule, the
whole schedule failing (the endpoint disabled and its owners mailed), manual redelivery."""

from __future__ import annotations

import re
import time
from datetime import datetime, timedelta
from typing import Any

import httpx

from paygate.db import Database
from paygate.settings import Settings
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.enqueue import enqueue_event
from paygate.webhooks.outbound.schedule import JITTER, RETRY_SCHEDULE
from tests.conftest import Tenant
from tests.fakes.mail import Mailbox, body_of
from tests.gateways.helpers import audit_entries
from tests.web.helpers import csrf_of, new_client
from tests.webhooks.outbound.conftest import (
    Clock,
    create_endpoint,
    deliveries_of,
    delivery,
    due_jobs,
    run_jobs,
    send_test,
)
from tests.webhooks.outbound.receiver import HANG, Receiver


def wait_for(receiver: Receiver, count: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while len(receiver.received) < count:
        assert time.monotonic() < deadline, f"{len(receiver.received)} of {count} received"
        time.sleep(0.02)


def at(value: str) -> datetime:
    return datetime.fromisoformat(value)


def within_jitter(wait: timedelta, base: timedelta) -> bool:
    return base * (1 - JITTER) <= wait <= base * (1 + JITTER)


async def test_a_delivery_follows_standard_webhooks(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    receiver.answer_body = "thanks " + "x" * 3000
    delivery_id = await send_test(client, tenant, endpoint["id"])

    assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]

    [got] = receiver.verified()
    assert got.headers["content-type"] == "application/json"
    assert got.headers["webhook-id"].startswith("msg_")
    assert abs(int(got.headers["webhook-timestamp"]) - time.time()) < 60
    assert len(got.signatures) == 1
    assert got.signatures[0].startswith("v1,")
    assert got.event["type"] == "webhook.test"
    assert got.event["data"]["endpoint_id"] == endpoint["id"]
    assert got.event["timestamp"].endswith("Z")

    logged = await delivery(client, tenant, endpoint["id"], delivery_id)
    assert logged["status"] == "succeeded"
    assert logged["message_id"] == got.headers["webhook-id"]
    assert logged["payload"] == got.body.decode()
    [attempt] = logged["attempts"]
    assert attempt["status_code"] == 200
    assert attempt["succeeded"] is True
    assert attempt["latency_ms"] is not None
    assert attempt["response_body"] == ("thanks " + "x" * 3000)[:2048]
    assert attempt["next_attempt_at"] is None
    # A job that runs again (a retry of the job itself) sends nothing more.
    assert await dispatcher.deliver(delivery_id) == "skipped"
    assert len(receiver.received) == 1


async def test_retries_after_a_500_and_a_timeout_follow_the_schedule(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    timed_dispatcher: Dispatcher,
    clock: Clock,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    receiver.plan.extend([500, HANG, 200])
    receiver.hang_seconds = 2.0
    delivery_id = await send_test(client, tenant, endpoint["id"])

    assert await run_jobs(database, timed_dispatcher, {delivery_id}, at=clock.now) == ["retrying"]
    first = await delivery(client, tenant, endpoint["id"], delivery_id)
    retry_at = at(first["next_attempt_at"])
    assert within_jitter(retry_at - clock.now, RETRY_SCHEDULE[0])  # about 5 s
    # The retry's job waits for its time.
    assert delivery_id not in dict(await due_jobs(database, retry_at - timedelta(seconds=1)))

    clock.now = retry_at
    assert await run_jobs(database, timed_dispatcher, {delivery_id}, at=clock.now) == ["retrying"]
    second = await delivery(client, tenant, endpoint["id"], delivery_id)
    retry_at = at(second["next_attempt_at"])
    assert within_jitter(retry_at - clock.now, RETRY_SCHEDULE[1])  # about 5 min

    clock.now = retry_at
    assert await run_jobs(database, timed_dispatcher, {delivery_id}, at=clock.now) == ["succeeded"]
    done = await delivery(client, tenant, endpoint["id"], delivery_id)
    assert done["status"] == "succeeded"
    assert done["attempt_count"] == 3
    assert [(a["status_code"], a["succeeded"]) for a in done["attempts"]] == [
        (500, False),
        (None, False),
        (200, True),
    ]
    assert done["attempts"][0]["error"] == "answered HTTP 500"
    assert done["attempts"][1]["error"] == "no answer within 1 s"
    assert done["attempts"][0]["next_attempt_at"] == first["next_attempt_at"]

    wait_for(receiver, 3)  # the hung request is recorded when its handler ends
    assert {r.headers["webhook-id"] for r in receiver.received} == {done["message_id"]}
    assert all(r.verified_with for r in receiver.received)
    endpoint_now = await client.get(
        f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers
    )
    assert endpoint_now.json()["failing_since"] is None  # the success forgave the failures


async def test_a_whole_failing_schedule_disables_the_endpoint_and_mails_the_owners(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    timed_dispatcher: Dispatcher,
    clock: Clock,
    mailbox: Mailbox,
    app: Any,
    settings: Settings,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    receiver.default_status = 503
    delivery_id = await send_test(client, tenant, endpoint["id"])
    started = clock.now

    waits = []
    for number in range(1, len(RETRY_SCHEDULE) + 2):
        results = await run_jobs(database, timed_dispatcher, {delivery_id}, at=clock.now)
        last = number == len(RETRY_SCHEDULE) + 1
        assert results == (["failed"] if last else ["retrying"]), number
        if not last:
            state = await delivery(client, tenant, endpoint["id"], delivery_id)
            next_at = at(state["next_attempt_at"])
            waits.append(next_at - clock.now)
            clock.now = next_at
    assert all(within_jitter(w, base) for w, base in zip(waits, RETRY_SCHEDULE, strict=True))
    assert timedelta(hours=20) < clock.now - started < timedelta(hours=35)  # about a day

    ended = await delivery(client, tenant, endpoint["id"], delivery_id)
    assert (ended["status"], ended["attempt_count"]) == ("failed", 8)
    assert len(receiver.verified()) == 8
    shown = await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
    assert (shown.json()["enabled"], shown.json()["disabled_reason"]) == (False, "failing")
    [mail] = mailbox.wait_for(tenant.email)
    assert "webhook endpoint disabled" in str(mail["Subject"])
    assert receiver.url() in body_of(mail)
    assert endpoint["signing_secret"] not in body_of(mail)
    # The mail's link is the endpoint's page, with its delivery log, as its owner sees it.
    link = re.search(rf"{re.escape(settings.base_url)}(/\S*)", body_of(mail))
    assert link is not None
    assert link.group(1) == f"/webhook-endpoints/{endpoint['id']}"
    async with new_client(app) as browser:
        login = await browser.get("/login")
        signed_in = await browser.post(
            "/login",
            data={
                "email": tenant.email,
                "password": tenant.password,
                "csrf_token": csrf_of(login.text),
            },
        )
        assert signed_in.status_code == 303, signed_in.text
        page = await browser.get(link.group(1))
    assert page.status_code == 200, page.text
    assert receiver.url() in page.text
    disabled = [
        e
        for e in await audit_entries(client, tenant, object_id=endpoint["id"])
        if e["action"] == "webhook_endpoint.disabled"
    ]
    assert [(e["actor_type"], e["outcome"]) for e in disabled] == [("system", "failure")]
    # Paygate's change is a version too, as a person's would be.
    versions = await client.get(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/versions", headers=tenant.headers
    )
    latest = versions.json()[0]
    assert (latest["version"], latest["actor"]["type"]) == (2, "system")
    assert latest["summary"].startswith("disabled by paygate")

    # While disabled, events are not queued for it, and redelivery asks to enable it first.
    async with database.transaction() as session:
        queued = await enqueue_event(session, tenant.company_id, "payment.failed", {"id": "x"})
    assert queued == []
    redeliver = f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}/redeliver"
    refused = await client.post(redeliver, headers=tenant.headers)
    assert refused.status_code == 409
    assert refused.headers["content-type"] == "application/problem+json"

    # Fixed and enabled again: a manual redelivery gets it there, once, same webhook-id.
    receiver.default_status = 200
    await client.patch(
        f"/api/v1/webhook-endpoints/{endpoint['id']}",
        json={"enabled": True},
        headers=tenant.headers,
    )
    assert (await client.post(redeliver, headers=tenant.headers)).status_code == 202
    assert await run_jobs(database, timed_dispatcher, {delivery_id}, at=clock.now) == ["succeeded"]
    final = await delivery(client, tenant, endpoint["id"], delivery_id)
    assert final["status"] == "succeeded"
    assert final["attempts"][-1]["trigger"] == "manual"
    assert receiver.received[-1].headers["webhook-id"] == final["message_id"]
    actions = [e["action"] for e in await audit_entries(client, tenant, object_id=delivery_id)]
    assert actions == ["webhook_delivery.redelivered"]


async def test_a_success_between_failures_keeps_the_endpoint_enabled(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    timed_dispatcher: Dispatcher,
    clock: Clock,
) -> None:
    """Svix's rule: disabled only when nothing got through for the whole schedule."""
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.default_status = 500
    failing = await send_test(client, tenant, endpoint["id"])
    for number in range(1, len(RETRY_SCHEDULE) + 2):
        if number == 4:  # another delivery gets through meanwhile
            receiver.plan.append(200)
            lucky = await send_test(client, tenant, endpoint["id"])
            assert await run_jobs(database, timed_dispatcher, {lucky}, at=clock.now) == [
                "succeeded"
            ]
        await run_jobs(database, timed_dispatcher, {failing}, at=clock.now)
        state = await delivery(client, tenant, endpoint["id"], failing)
        if state["next_attempt_at"]:
            clock.now = at(state["next_attempt_at"])
    assert state["status"] == "failed"
    shown = await client.get(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
    assert shown.json()["enabled"] is True
    assert shown.json()["failing_since"] is not None


async def test_a_pending_delivery_can_be_retried_now(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    dispatcher: Dispatcher,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.plan.append(500)
    delivery_id = await send_test(client, tenant, endpoint["id"])
    assert await run_jobs(database, dispatcher, {delivery_id}) == ["retrying"]
    redelivered = await client.post(
        f"/api/v1/webhook-endpoints/{endpoint['id']}/deliveries/{delivery_id}/redeliver",
        headers=tenant.headers,
    )
    assert redelivered.status_code == 202
    assert redelivered.json()["status"] == "pending"
    # Now due: the redelivery's job runs; the retry's own job, later, finds nothing to do.
    assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]
    later = datetime.fromisoformat(redelivered.json()["created_at"]) + timedelta(minutes=1)
    assert await run_jobs(database, dispatcher, {delivery_id}, at=later) == ["skipped"]
    assert [d["status"] for d in await deliveries_of(client, tenant, endpoint["id"])] == [
        "succeeded"
    ]
    assert len(receiver.received) == 2


async def test_a_receiver_that_fails_then_recovers_gets_each_event_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    timed_dispatcher: Dispatcher,
    clock: Clock,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    receiver.default_status = 502
    ids = {await send_test(client, tenant, endpoint["id"]) for _ in range(3)}
    assert await run_jobs(database, timed_dispatcher, ids, at=clock.now) == ["retrying"] * 3

    receiver.default_status = 200  # the receiver is healthy again
    for _ in range(3):  # walk the clock past every retry that is due
        clock.now += timedelta(minutes=10)
        await run_jobs(database, timed_dispatcher, ids, at=clock.now)
    shown = await deliveries_of(client, tenant, endpoint["id"])
    assert [d["status"] for d in shown] == ["succeeded"] * 3
    delivered = [r.headers["webhook-id"] for r in receiver.verified() if r.answered == 200]
    assert sorted(delivered) == sorted(d["message_id"] for d in shown)  # each exactly once
