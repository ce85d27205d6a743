"""Paying, refunding and syncing through a gateway whose secrets cannot be decrypted.

The secrets are made unreadable the way an attacker with database access would try it:
company B's sealed secrets copied onto company A's gateway row. The associated data binds
them to B's row, so they do not open for A; every payment path then answers a clear
problem (never a 500), writes nothing, and leaves the idempotency key free for a retry.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.payments.models import Payment, Refund
from tests.conftest import Tenant
from tests.payments.helpers import create_invoice, get_invoice, pay, sandbox_gateway
from tests.web.helpers import new_client
from tests.web.test_pay_page import count_payments, pay_by_card

ACTION_CARD = "4000002500003155"
UNREADABLE = "https://paygate.dev/problems/gateway-credentials-unreadable"


SealedRow = tuple[str, bytes, bytes]
CopySealed = Callable[[str, str], Awaitable[None]]


async def sealed_of(session: AsyncSession, gateway_id: str) -> SealedRow:
    row = (await session.execute(select(Gateway).where(Gateway.id == gateway_id))).scalar_one()
    return row.key_id, bytes(row.wrapped_data_key), bytes(row.secret_ciphertext)


async def put_sealed(session: AsyncSession, gateway_id: str, sealed: SealedRow) -> None:
    key_id, wrapped, ciphertext = sealed
    await session.execute(
        update(Gateway)
        .where(Gateway.id == gateway_id)
        .values(key_id=key_id, wrapped_data_key=wrapped, secret_ciphertext=ciphertext)
    )


@pytest.fixture
async def copy_sealed_secrets(database: Database) -> AsyncIterator[CopySealed]:
    """Put the source row's key id, wrapped data key and ciphertext on the target row; the
    target's own are put back afterwards (the operator's `keys rotate` in later tests
    re-wraps every company's rows and would stop at an unreadable one)."""
    originals: dict[str, SealedRow] = {}

    async def copy(source_id: str, target_id: str) -> None:
        async with database.transaction() as session:
            originals.setdefault(target_id, await sealed_of(session, target_id))
            await put_sealed(session, target_id, await sealed_of(session, source_id))

    yield copy
    async with database.transaction() as session:
        for gateway_id, sealed in originals.items():
            await put_sealed(session, gateway_id, sealed)


async def reenter_credentials(client: httpx.AsyncClient, tenant: Tenant, gateway_id: str) -> None:
    # The sandbox has no secret fields: saving its configuration seals a fresh envelope.
    saved = await client.patch(
        f"/api/v1/gateways/{gateway_id}", json={"configuration": {}}, headers=tenant.headers
    )
    assert saved.status_code == 200, saved.text
    assert saved.json()["credentials_readable"] is True


async def refund_count(database: Database, payment_id: str) -> int:
    async with database.transaction() as session:
        statement = select(func.count()).select_from(Refund).where(Refund.payment_id == payment_id)
        return int((await session.execute(statement)).scalar_one())


def assert_unreadable_problem(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 409, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["type"] == UNREADABLE
    assert "cannot be decrypted" in body["detail"]
    return body


async def test_paying_through_a_gateway_with_another_companys_ciphertext_is_a_clear_refusal(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    copy_sealed_secrets: CopySealed,
) -> None:
    mine = await sandbox_gateway(client, tenant)
    theirs = await sandbox_gateway(client, other_tenant)
    await copy_sealed_secrets(theirs["id"], mine["id"])

    # The gateway list and the gateway itself still answer, and say what is wrong.
    listed = await client.get("/api/v1/gateways", headers=tenant.headers)
    assert listed.status_code == 200
    assert [g["credentials_readable"] for g in listed.json()] == [False]

    invoice = await create_invoice(client, tenant)
    key = secrets.token_hex(8)
    refused = await client.post(
        f"/api/v1/invoices/{invoice['id']}/payments",
        json={"payment_method": "4242424242424242"},
        headers={**tenant.headers, "Idempotency-Key": key},
    )
    assert_unreadable_problem(refused)
    assert await count_payments(database, invoice["id"]) == 0
    assert (await get_invoice(client, tenant, invoice["id"]))["status"] == "open"

    # The other company's gateway, whose ciphertext it was, is untouched and pays.
    their_invoice = await create_invoice(client, other_tenant)
    assert (await pay(client, other_tenant, their_invoice["id"]))["status"] == "succeeded"

    # Nothing is stuck: once the credentials are re-entered, the same key pays.
    await reenter_credentials(client, tenant, mine["id"])
    paid = await pay(client, tenant, invoice["id"], key=key)
    assert paid["status"] == "succeeded"


async def test_refund_and_sync_through_an_undecryptable_gateway_change_nothing(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    copy_sealed_secrets: CopySealed,
) -> None:
    mine = await sandbox_gateway(client, tenant)
    theirs = await sandbox_gateway(client, other_tenant)
    invoice = await create_invoice(client, tenant)
    payment = await pay(client, tenant, invoice["id"])
    assert payment["status"] == "succeeded"
    # A payment waiting for the customer (3-D Secure): a sync will ask the gateway about it.
    waiting = await pay(
        client, tenant, (await create_invoice(client, tenant))["id"], payment_method=ACTION_CARD
    )
    assert waiting["status"] == "requires_action"
    await copy_sealed_secrets(theirs["id"], mine["id"])

    key = secrets.token_hex(8)
    refund_path = f"/api/v1/payments/{payment['id']}/refunds"
    refused = await client.post(
        refund_path, json={}, headers={**tenant.headers, "Idempotency-Key": key}
    )
    assert_unreadable_problem(refused)
    assert await refund_count(database, payment["id"]) == 0

    # Asking the gateway about the waiting payment is refused too; it stays open.
    synced = await client.post(f"/api/v1/payments/{waiting['id']}/sync", headers=tenant.headers)
    assert_unreadable_problem(synced)
    async with database.transaction() as session:
        stored = await session.get(Payment, waiting["id"])
        assert stored is not None
        assert stored.status == "requires_action"

    await reenter_credentials(client, tenant, mine["id"])
    refunded = await client.post(
        refund_path, json={}, headers={**tenant.headers, "Idempotency-Key": key}
    )
    assert refunded.status_code == 201, refunded.text
    assert refunded.json()["status"] == "succeeded"


async def test_the_payment_page_says_the_way_to_pay_is_unavailable(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    app: Any,
    copy_sealed_secrets: CopySealed,
) -> None:
    mine = await sandbox_gateway(client, tenant)
    theirs = await sandbox_gateway(client, other_tenant)
    await copy_sealed_secrets(theirs["id"], mine["id"])
    invoice = await create_invoice(client, tenant)

    async with new_client(app) as customer:
        answered, _ = await pay_by_card(customer, invoice)
    assert answered.status_code == 409, answered.text
    assert "not available right now" in answered.text
    assert "decrypt" not in answered.text  # the customer is not told about keys
    assert await count_payments(database, invoice["id"]) == 0
