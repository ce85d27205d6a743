"""The retry schedule's arithmetic, and endpoint secrets following a new master key."""

from __future__ import annotations

import random
import secrets
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from pydantic import SecretStr

from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from paygate.security.crypto import Keyring, generate_master_key
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.models import WebhookEndpoint
from paygate.webhooks.outbound.schedule import (
    MAX_ATTEMPTS,
    OVERLOAD_PENALTY,
    RETRY_SCHEDULE,
    next_wait,
    retry_after,
)
from paygate.webhooks.outbound.tasks import rewrap_endpoint_secrets
from tests.conftest import Tenant
from tests.webhooks.outbound.conftest import create_endpoint, run_jobs, send_test
from tests.webhooks.outbound.receiver import Receiver

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)


def test_the_schedule_is_svix_s_about_a_day_in_all() -> None:
    assert [int(w.total_seconds()) for w in RETRY_SCHEDULE] == [
        5,
        300,
        1800,
        7200,
        18000,
        36000,
        36000,
    ]
    assert MAX_ATTEMPTS == 8
    assert timedelta(hours=27) < sum(RETRY_SCHEDULE, timedelta()) < timedelta(hours=28)


@pytest.mark.parametrize("number", range(1, len(RETRY_SCHEDULE) + 1))
def test_each_wait_is_the_schedule_give_or_take_a_fifth(number: int) -> None:
    rng = random.Random(number)
    base = RETRY_SCHEDULE[number - 1]
    waits = [next_wait(number, rng=rng) for _ in range(200)]
    assert all(w is not None and base * 0.8 <= w <= base * 1.2 for w in waits)
    assert len(set(waits)) > 100  # jittered, not one value


def test_after_the_last_attempt_there_is_no_wait() -> None:
    assert next_wait(MAX_ATTEMPTS) is None
    assert next_wait(0) is None


def test_an_overloaded_endpoint_waits_at_least_a_minute() -> None:
    wait = next_wait(1, overloaded=True, rng=random.Random(1))
    assert wait is not None
    assert OVERLOAD_PENALTY * 0.8 <= wait <= OVERLOAD_PENALTY * 1.2


def test_retry_after_is_honoured_between_the_wait_and_twice_it() -> None:
    rng = random.Random(7)
    base = RETRY_SCHEDULE[1]  # 5 minutes
    longer = next_wait(2, asked=timedelta(hours=1), rng=rng)
    shorter = next_wait(2, asked=timedelta(seconds=1), rng=rng)
    between = next_wait(2, asked=timedelta(minutes=7), rng=rng)
    assert longer is not None
    assert base * 2 * 0.8 <= longer <= base * 2 * 1.2
    assert shorter is not None
    assert base * 0.8 <= shorter <= base * 1.2
    assert between is not None
    assert timedelta(minutes=7) * 0.8 <= between


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("120", timedelta(seconds=120)),
        ("1.5", timedelta(seconds=1.5)),
        ("-3", timedelta(0)),
        ("Sun, 06 Dec 2026 12:10:00 GMT", timedelta(minutes=10)),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_headers_are_read(header: str | None, expected: timedelta | None) -> None:
    assert retry_after(header, NOW) == expected


async def test_endpoint_secrets_follow_a_new_primary_master_key(
    client: httpx.AsyncClient,
    tenant: Tenant,
    receiver: Receiver,
    database: Database,
    jobs: JobContext,
) -> None:
    endpoint = await create_endpoint(client, tenant, receiver.url())
    receiver.secrets.append(endpoint["signing_secret"])
    new_key = generate_master_key(f"wh-{secrets.token_hex(3)}")
    both = Keyring.parse(f"{new_key},{jobs.settings.master_keys_text()}")
    try:
        assert await rewrap_endpoint_secrets(database, both) >= 1
        async with database.transaction() as session:
            row = await session.get(WebhookEndpoint, endpoint["id"])
            assert row is not None
            assert row.key_id == both.primary_key_id
        # The old master key can be retired: the new one alone signs the deliveries.
        only_new = Keyring.parse(new_key)
        settings = jobs.settings.model_copy(update={"master_keys": SecretStr(new_key)})
        dispatcher = Dispatcher(database, only_new, settings)
        delivery_id = await send_test(client, tenant, endpoint["id"])
        assert await run_jobs(database, dispatcher, {delivery_id}) == ["succeeded"]
        assert len(receiver.verified()) == 1
        # A key it cannot open is reported and left alone, never lost.
        assert await rewrap_endpoint_secrets(database, jobs.keyring) == 0
    finally:
        # Every endpoint of the shared test database moved: put them back under the key
        # the other tests use.
        back = Keyring.parse(f"{jobs.settings.master_keys_text()},{new_key}")
        await rewrap_endpoint_secrets(database, back)
        await client.delete(f"/api/v1/webhook-endpoints/{endpoint['id']}", headers=tenant.headers)
