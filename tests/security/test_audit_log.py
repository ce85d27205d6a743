"""The audit log cannot be edited or deleted, by the API or even by SQL."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from paygate.db import Database
from tests.conftest import Tenant
from tests.gateways.helpers import audit_entries, create_gateway, sandbox_payload


async def test_entries_cannot_be_changed_or_deleted(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    gateway = await create_gateway(client, tenant, sandbox_payload())
    [entry] = await audit_entries(client, tenant, object_id=gateway["id"])
    for method in ("DELETE", "PATCH", "PUT"):
        response = await client.request(method, "/api/v1/audit-log", headers=tenant.headers)
        assert response.status_code == 405
    for statement in (
        "UPDATE audit_entries SET outcome = 'failure' WHERE id = :id",
        "DELETE FROM audit_entries WHERE id = :id",
        "TRUNCATE audit_entries",
    ):
        with pytest.raises(DBAPIError, match="audit entries cannot be changed or deleted"):
            async with database.transaction() as session:
                await session.execute(text(statement), {"id": entry["id"]})
    assert (await audit_entries(client, tenant, object_id=gateway["id"])) == [entry]


async def test_filters_by_object_actor_and_time(
    client: httpx.AsyncClient, tenant: Tenant, other_tenant: Tenant
) -> None:
    first = await create_gateway(client, tenant, sandbox_payload("First"))
    await create_gateway(client, tenant, sandbox_payload("Second"))
    await create_gateway(client, other_tenant, sandbox_payload("Theirs"))
    by_object = await audit_entries(client, tenant, object_type="gateway", object_id=first["id"])
    assert [e["object_id"] for e in by_object] == [first["id"]]
    by_actor = await audit_entries(
        client, tenant, actor_id=tenant.user_id, action="gateway.created"
    )
    assert len(by_actor) == 2  # the other company's entry is never listed
    since = by_object[0]["occurred_at"]
    later = await audit_entries(client, tenant, action="gateway.created", since=since)
    assert first["id"] in [e["object_id"] for e in later]
    assert await audit_entries(client, tenant, action="gateway.created", until=since) == []
