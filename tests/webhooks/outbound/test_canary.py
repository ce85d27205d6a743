"""A canary signing secret shows up nowhere but in the one answer that hands it out: not
in later answers, pages, logs, the audit log, the deliveries (bodies) or a database dump."""

from __future__ import annotations

import base64
import logging

import httpx
import pytest
import structlog

from paygate.db import Database
from paygate.webhooks.outbound.dispatch import Dispatcher
from tests.security.test_canary import CANARY, pg_dump
from tests.web.helpers import WebUser
from tests.webhooks.outbound.conftest import run_jobs
from tests.webhooks.outbound.receiver import Receiver

RAW = (CANARY * 2).encode()[:32]
CANARY_SECRET = "whsec_" + base64.b64encode(RAW).decode()


async def test_the_signing_secret_appears_nowhere(
    owner: WebUser,
    receiver: Receiver,
    database: Database,
    database_url: str,
    dispatcher: Dispatcher,
    caplog: pytest.LogCaptureFixture,
    capfd: pytest.CaptureFixture[str],
) -> None:
    api = owner.client
    headers = owner.bearer
    seen: list[str] = []
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        created = await api.post(
            "/api/v1/webhook-endpoints",
            json={
                "url": receiver.url(),
                "event_types": ["invoice.paid"],
                "secret": CANARY_SECRET,
            },
            headers=headers,
        )
        assert created.status_code == 201, created.text
        assert created.json()["signing_secret"] == CANARY_SECRET  # handed out this once
        endpoint_id = created.json()["id"]
        base = f"/api/v1/webhook-endpoints/{endpoint_id}"
        receiver.secrets.append(CANARY_SECRET)

        responses: list[httpx.Response] = [
            await api.get(base, headers=headers),
            await api.get("/api/v1/webhook-endpoints", headers=headers),
            await api.patch(base, json={"description": "Canary"}, headers=headers),
            await api.patch(base, json={"url": "gopher://x", "secret": "x"}, headers=headers),
            await api.post(base + "/test", headers=headers),
        ]
        delivery_id = responses[-1].json()["id"]
        receiver.plan.append(500)  # a failed attempt logs its error too
        await run_jobs(database, dispatcher, {delivery_id})
        await api.post(f"{base}/deliveries/{delivery_id}/redeliver", headers=headers)
        await run_jobs(database, dispatcher, {delivery_id})
        rotated = await api.post(base + "/rotate-secret", json={}, headers=headers)
        new_secret = rotated.json()["signing_secret"]
        second = await api.post(base + "/test", headers=headers)
        await run_jobs(database, dispatcher, {second.json()["id"]})
        responses += [
            await api.get(f"{base}/deliveries", headers=headers),
            await api.get(f"{base}/deliveries/{delivery_id}", headers=headers),
            await api.get(base, headers=headers),
            await api.get("/api/v1/audit-log", params={"limit": 200}, headers=headers),
            await api.get("/webhook-endpoints"),
            await api.get(f"/webhook-endpoints/{endpoint_id}"),
        ]
        seen += [r.text for r in responses]

    # The deliveries were signed with it: the receiver verified them.
    assert len(receiver.verified()) == 3
    out, err = capfd.readouterr()
    haystacks = {
        "answers and pages": "\n".join(seen),
        "structlog": repr(events),
        "stdlib logs": caplog.text,
        "stdout/stderr": out + err,
        "delivered bodies": "\n".join(r.body.decode() for r in receiver.received),
        "database dump": pg_dump(database_url),
    }
    assert "webhook_endpoint.secret_rotated" in haystacks["answers and pages"]
    for where, text in haystacks.items():
        for secret in (CANARY_SECRET, new_secret, CANARY, new_secret.removeprefix("whsec_")):
            assert secret not in text, f"a signing secret leaked into {where}"
        assert RAW.hex() not in text, f"the raw secret leaked (hex) into {where}"
