"""Custom gateways sign with Standard Webhooks (docs/custom-gateway.md section 7): every
way a delivery can be wrong is refused with 400, stored as rejected with its reason, and
changes nothing; the right ones are accepted, during a rotation with either secret."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from sqlalchemy import text
from standardwebhooks import Webhook

from tests.conftest import Tenant
from tests.webhooks.inbound.helpers import Scene, deliver, event, new_secret


async def test_a_signed_event_settles_the_payment_through_a_job(scene: Scene) -> None:
    scene.emulator.settle(scene.reference, "succeeded")
    response = await scene.deliver(scene.emulator.outbox[-1])
    assert response.status_code == 200, response.text
    stored = response.json()
    assert stored["received"] is True
    assert stored["duplicate"] is False
    # Stored first: the payment moves only when the job runs.
    assert (await scene.payment_now())["status"] == "processing"
    assert await scene.process() == ["processed"]
    assert (await scene.payment_now())["status"] == "succeeded"
    seen = await scene.event(stored["id"])
    assert seen["status"] == "processed"
    assert seen["verified"] is True
    assert seen["payment_id"] == scene.payment["id"]
    assert [a["result"] for a in seen["history"]] == ["processed"]
    assert "current secret" in seen["verification"]


async def _refused(
    client: httpx.AsyncClient,
    tenant: Tenant,
    gateway_id: str,
    body: bytes,
    headers: dict[str, str],
    reason: str,
) -> None:
    response = await deliver(client, gateway_id, body, headers)
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["type"].endswith("/webhook-signature-invalid")
    assert reason in problem["detail"]
    listed = await client.get(
        "/api/v1/webhook-events",
        params={"gateway_id": gateway_id, "status": "rejected"},
        headers=tenant.headers,
    )
    latest = listed.json()["data"][0]
    assert latest["verified"] is False
    assert reason in latest["verification"]


def _signed(secret: str, event: dict[str, Any], at: datetime) -> tuple[bytes, dict[str, str]]:
    import json

    body = json.dumps(event).encode()
    signature = Webhook(secret).sign(event["id"], at, body.decode())
    return body, {
        "webhook-id": event["id"],
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
    }


async def test_every_wrong_delivery_is_refused_stored_and_changes_nothing(scene: Scene) -> None:
    client, tenant, emulator = scene.client, scene.tenant, scene.emulator
    emulator.settle(scene.reference, "succeeded")
    good = emulator.outbox[-1]
    now = datetime.now(UTC)
    gid = scene.gateway["id"]

    wrong = _signed(new_secret(), good.event, now)
    await _refused(client, tenant, gid, *wrong, "no v1 signature matches")
    tampered = good.body.replace(b'"succeeded"', b'"failed"', 1)
    await _refused(client, tenant, gid, tampered, good.headers, "no v1 signature matches")
    old = _signed(emulator.webhook_secret, good.event, now - timedelta(minutes=6))
    await _refused(client, tenant, gid, *old, "more than 5 minutes old")
    future = _signed(emulator.webhook_secret, good.event, now + timedelta(minutes=6))
    await _refused(client, tenant, gid, *future, "in the future")
    for missing in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        headers = {k: v for k, v in good.headers.items() if k != missing}
        await _refused(client, tenant, gid, good.body, headers, "header is missing")

    assert await scene.process() == []
    assert (await scene.payment_now())["status"] == "processing"
    # Just inside the tolerance, both ways, is fine.
    inside = _signed(emulator.webhook_secret, good.event, now - timedelta(minutes=4))
    assert (await scene.deliver(*inside)).status_code == 200


async def test_both_secrets_verify_during_the_rotation_grace_and_only_the_new_after(
    scene: Scene,
) -> None:
    client, tenant, emulator, gateway = scene.client, scene.tenant, scene.emulator, scene.gateway
    old, new = emulator.webhook_secret, new_secret()
    replaced = await client.patch(
        f"/api/v1/gateways/{gateway['id']}",
        json={"configuration": {"webhook_secret": new}, "previous_secret_grace_hours": 1},
        headers=tenant.headers,
    )
    assert replaced.status_code == 200, replaced.text
    now = datetime.now(UTC)
    sample = {"id": "evt_rotation_1", "type": "ping", "data": {}}
    with_old = _signed(old, sample, now)
    accepted = await deliver(client, gateway["id"], *with_old)
    assert accepted.status_code == 200
    assert "previous secret" in (await event(client, tenant, accepted.json()["id"]))["verification"]
    # Several signatures (the sender's own rotation): any one matching is enough.
    both = _signed(new, {**sample, "id": "evt_rotation_2"}, now)
    extra = Webhook(new_secret()).sign("evt_rotation_2", now, both[0].decode())
    headers = {**both[1], "webhook-signature": f"{extra} {both[1]['webhook-signature']}"}
    assert (await deliver(client, gateway["id"], both[0], headers)).status_code == 200

    # The grace ends: the old secret is refused (even before the sweeper wipes it).
    async with scene.database.transaction() as session:
        await session.execute(
            text(
                "UPDATE gateways SET secret_hints = jsonb_set(secret_hints, "
                "'{webhook_secret,previous_valid_until}', to_jsonb(CAST(:until AS text))) "
                "WHERE id = :id"
            ),
            {"until": (now - timedelta(seconds=1)).isoformat(), "id": gateway["id"]},
        )
    late = _signed(old, {**sample, "id": "evt_rotation_3"}, now)
    await _refused(client, tenant, gateway["id"], *late, "no v1 signature matches")
