"""Gateways, payments and webhook deliveries the inbound webhook tests share."""

from __future__ import annotations

import base64
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any

import httpx
from sqlalchemy import text

from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from paygate.webhooks.inbound.processing import (
    ProcessingContext,
    process_event,
    process_received,
)
from paygate.webhooks.inbound.providers.stripe import sign as stripe_sign
from paygate.webhooks.inbound.receive import RECEIVED_JOB, TASK_NAME
from tests.conftest import Tenant
from tests.fakes.common import WebhookDelivery
from tests.fakes.custom_gateway import CustomGatewayEmulator
from tests.gateways.helpers import create_gateway
from tests.payments.helpers import create_invoice, pay

SLOW_TOKEN = "tok_4000000000000259"  # the custom emulator answers `processing`
STRIPE_SECRET = "whsec_" + "s3cr3t" * 6
# A value that must never show up in an answer, a log line, stored headers or the audit log.
CANARY = "whsec_" + base64.b64encode(b"canary-" + secrets.token_bytes(24)).decode()


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def custom_gateway(
    client: httpx.AsyncClient,
    tenant: Tenant,
    emulator: CustomGatewayEmulator,
    *,
    webhook_secret: str | None = None,
) -> dict[str, Any]:
    configuration = {"base_url": emulator.base_url, "api_key": emulator.api_key}
    if webhook_secret is not None:
        configuration["webhook_secret"] = webhook_secret
    return await create_gateway(
        client,
        tenant,
        {
            "name": "Custom",
            "gateway_type": "custom",
            "configuration": configuration,
            "supported_currencies": ["USD", "EUR"],
        },
    )


async def stripe_gateway(
    client: httpx.AsyncClient, tenant: Tenant, base_url: str, *, webhook_secret: str | None
) -> dict[str, Any]:
    configuration = {
        "secret_key": "sk_test_" + secrets.token_hex(12),
        "publishable_key": "pk_test_" + secrets.token_hex(12),
        "api_base_url": base_url,
    }
    if webhook_secret is not None:
        configuration["webhook_secret"] = webhook_secret
    return await create_gateway(
        client,
        tenant,
        {
            "name": "Stripe",
            "gateway_type": "stripe",
            "configuration": configuration,
            "supported_currencies": ["USD"],
        },
    )


async def processing_payment(
    client: httpx.AsyncClient, tenant: Tenant, gateway_id: str, *, amount: int = 12_500
) -> dict[str, Any]:
    """A payment the custom gateway answered `processing`: a webhook will settle it."""
    invoice = await create_invoice(client, tenant, amount=amount)
    payment = await pay(
        client, tenant, invoice["id"], gateway_id=gateway_id, payment_method=SLOW_TOKEN
    )
    assert payment["status"] == "processing", payment
    return payment


def stripe_delivery(
    event: dict[str, Any],
    secrets_: list[str],
    *,
    at: int | None = None,
) -> tuple[bytes, dict[str, str]]:
    """An event signed the way Stripe signs it, one v1 per secret."""
    body = json.dumps(event).encode()
    timestamp = int(time.time()) if at is None else at
    parts = [f"t={timestamp}"] + [f"v1={stripe_sign(body, s, timestamp)}" for s in secrets_]
    return body, {"content-type": "application/json", "stripe-signature": ",".join(parts)}


def stripe_event(event_type: str, obj: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": "evt_" + secrets.token_hex(12),
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "data": {"object": obj},
    }


async def deliver(
    client: httpx.AsyncClient,
    gateway_id: str,
    body: bytes | WebhookDelivery,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    if isinstance(body, WebhookDelivery):
        headers = {**body.headers, **(headers or {})}
        body = body.body
    return await client.post(f"/webhooks/{gateway_id}", content=body, headers=headers or {})


async def run_webhook_jobs(database: Database, jobs: JobContext) -> list[str | None]:
    """Run the processing jobs deferred so far, in order (as the worker would): a received
    events' job processes every event received and not yet attempted, a replay's its
    event. The statuses the runs left."""
    async with database.transaction() as session:
        rows = (
            await session.execute(
                text(
                    "DELETE FROM procrastinate_jobs WHERE task_name IN (:one, :received)"
                    " AND status = 'todo' RETURNING id, task_name, args"
                ),
                {"one": TASK_NAME, "received": RECEIVED_JOB.task_name},
            )
        ).all()
    context = ProcessingContext(jobs.database, jobs.keyring, jobs.settings)
    results: list[str | None] = []
    for _, task_name, args in sorted(rows, key=lambda row: row[0]):
        if task_name == RECEIVED_JOB.task_name:
            results += await process_received(context, limit=1000)
            continue
        results.append(
            await process_event(
                context,
                args["event_id"],
                trigger=args.get("trigger", "received"),
                actor=args.get("actor"),
            )
        )
    return results


async def event(client: httpx.AsyncClient, tenant: Tenant, event_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/webhook-events/{event_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def payment_of(client: httpx.AsyncClient, tenant: Tenant, payment_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/payments/{payment_id}", headers=tenant.headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


@dataclass
class Scene:
    """A custom gateway whose emulator signs its webhooks, a payment it left `processing`,
    and what a test does with them: deliver an event, run the jobs, read the results."""

    client: httpx.AsyncClient
    tenant: Tenant
    database: Database
    jobs: JobContext
    emulator: CustomGatewayEmulator
    gateway: dict[str, Any]
    payment: dict[str, Any]

    @property
    def reference(self) -> str:
        """The emulator's id of the payment (what its events name)."""
        payments = self.emulator.state.payments.values()
        found: str = next(p["id"] for p in payments if p["reference"] == self.payment["id"])
        return found

    async def deliver(
        self, delivery: bytes | WebhookDelivery, headers: dict[str, str] | None = None
    ) -> httpx.Response:
        return await deliver(self.client, self.gateway["id"], delivery, headers)

    async def process(self) -> list[str | None]:
        """Run the processing jobs deferred so far; the events' statuses after them."""
        return await run_webhook_jobs(self.database, self.jobs)

    async def payment_now(self) -> dict[str, Any]:
        return await payment_of(self.client, self.tenant, self.payment["id"])

    async def event(self, event_id: str) -> dict[str, Any]:
        return await event(self.client, self.tenant, event_id)

    async def succeed(self) -> None:
        """The gateway settles the payment and says so: delivered and processed."""
        self.emulator.settle(self.reference, "succeeded")
        await self.deliver(self.emulator.outbox[-1])
        await self.process()


async def new_scene(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    jobs: JobContext,
    emulator: CustomGatewayEmulator,
) -> Scene:
    emulator.webhook_secret = new_secret()
    gateway = await custom_gateway(client, tenant, emulator, webhook_secret=emulator.webhook_secret)
    payment = await processing_payment(client, tenant, gateway["id"])
    return Scene(client, tenant, database, jobs, emulator, gateway, payment)
