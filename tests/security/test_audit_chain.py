"""The audit log is hash-chained: `paygate audit verify` finds an edited or deleted entry."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.security.audit import verify_chains
from tests.conftest import Tenant, register
from tests.gateways.helpers import create_gateway, sandbox_payload
from tests.payments.helpers import create_invoice, pay, sandbox_gateway


def verify(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PAYGATE_DATABASE_URL": database_url,
        "PAYGATE_MODE": "test",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-c", "from paygate.cli import main; main()", "audit", "verify", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def chain_of(database: Database, company_id: str) -> list[dict[str, Any]]:
    async with database.transaction() as session:
        result = await session.execute(
            text("SELECT * FROM audit_entries WHERE company_id = :c ORDER BY seq"),
            {"c": company_id},
        )
        return [dict(row) for row in result.mappings()]


def assert_linked(chain: list[dict[str, Any]]) -> None:
    assert [entry["seq"] for entry in chain] == list(range(1, len(chain) + 1))
    assert chain[0]["prev_hash"] is None
    for before, entry in itertools.pairwise(chain):
        assert entry["prev_hash"] == before["hash"]
    assert len({entry["hash"] for entry in chain}) == len(chain)


@asynccontextmanager
async def as_an_attacker(database: Database) -> AsyncIterator[AsyncSession]:
    """SQL with the append-only trigger off, as someone with the database's owner role."""
    async with database.transaction() as session:
        await session.execute(text("ALTER TABLE audit_entries DISABLE TRIGGER USER"))
        yield session
        await session.execute(text("ALTER TABLE audit_entries ENABLE TRIGGER USER"))


async def put_back(database: Database, entry: dict[str, Any]) -> None:
    """Restore an entry exactly as it was, so the chain holds again."""
    columns = ", ".join(entry)
    values = ", ".join(f":{name}" for name in entry)
    async with as_an_attacker(database) as session:
        await session.execute(text("DELETE FROM audit_entries WHERE id = :id"), entry)
        await session.execute(
            text(f"INSERT INTO audit_entries ({columns}) VALUES ({values})"),
            {**entry, "changes": None}
            if entry["changes"] is None
            else {**entry, "changes": _json(entry["changes"])},
        )


def _json(value: Any) -> str:
    return json.dumps(value)


async def chain_holds(database: Database, company_id: str) -> bool:
    async with database.transaction() as session:
        return (await verify_chains(session, company_id)).ok


async def audited_activity(client: httpx.AsyncClient, tenant: Tenant) -> None:
    """Entries from the ORM (gateway create and update) and from raw SQL (a payment)."""
    gateway = await sandbox_gateway(client, tenant)
    response = await client.patch(
        f"/api/v1/gateways/{gateway['id']}",
        json={"name": "Sandbox renamed"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    invoice = await create_invoice(client, tenant)
    await pay(client, tenant, invoice["id"])


async def test_entries_from_the_api_chain_per_company(
    client: httpx.AsyncClient, database: Database, database_url: str
) -> None:
    first, second = await register(client), await register(client)
    await audited_activity(client, first)
    await audited_activity(client, second)
    await audited_activity(client, first)
    for tenant in (first, second):
        chain = await chain_of(database, tenant.company_id)
        actions = {entry["action"] for entry in chain}
        assert {"gateway.created", "gateway.updated", "payment.created"} <= actions, actions
        assert_linked(chain)
    # The whole log, every company's chain and the chain of no company, verifies.
    result = verify(database_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "every link holds" in result.stdout
    result = verify(database_url, "--company", first.company_id)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{len(await chain_of(database, first.company_id))} entries in 1 chains" in (
        result.stdout
    )


EDITS: dict[str, Callable[[dict[str, Any]], tuple[str, dict[str, Any]]]] = {
    "detail": lambda e: ("UPDATE audit_entries SET detail = 'nothing to see' WHERE id = :id", e),
    "outcome": lambda e: ("UPDATE audit_entries SET outcome = 'failure' WHERE id = :id", e),
    "time": lambda e: (
        "UPDATE audit_entries SET occurred_at = occurred_at - interval '1 day' WHERE id = :id",
        e,
    ),
    "changes": lambda e: (
        'UPDATE audit_entries SET changes = \'{"name": {"before": "a", "after": "b"}}\''
        " WHERE id = :id",
        e,
    ),
    # A careful attacker recomputes the hash of the entry they edited: the next link breaks.
    "rehashed": lambda e: (
        "UPDATE audit_entries SET actor_label = 'someone else' WHERE id = :id;"
        " UPDATE audit_entries a SET hash = audit_entry_hash(a) WHERE id = :id",
        e,
    ),
    "renumbered": lambda e: ("UPDATE audit_entries SET seq = seq + 1000 WHERE id = :id", e),
}


@pytest.mark.parametrize("edit", sorted(EDITS))
async def test_an_edited_entry_is_found(
    client: httpx.AsyncClient, database: Database, database_url: str, edit: str
) -> None:
    tenant = await register(client)
    await audited_activity(client, tenant)
    chain = await chain_of(database, tenant.company_id)
    target = chain[1]
    statement, params = EDITS[edit](target)
    try:
        async with as_an_attacker(database) as session:
            for part in statement.split(";"):
                await session.execute(text(part), {"id": params["id"]})
        result = verify(database_url, "--company", tenant.company_id)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "BROKEN" in result.stdout
        # The report names the edited entry, or the one after it when the edit kept the
        # entry whole (rehashed) or moved it to the end (renumbered).
        named = chain[2]["id"] if edit in ("rehashed", "renumbered") else target["id"]
        assert named in result.stdout, result.stdout
        # Another company's chain is untouched.
        async with database.transaction() as session:
            report = await verify_chains(session)
        assert [link.company_id for link in report.broken] == [tenant.company_id]
    finally:
        await put_back(database, target)
    assert await chain_holds(database, tenant.company_id)


@pytest.mark.parametrize("position", ["first", "middle", "last but one"])
async def test_a_deleted_entry_is_found(
    client: httpx.AsyncClient, database: Database, database_url: str, position: str
) -> None:
    tenant = await register(client)
    await audited_activity(client, tenant)
    chain = await chain_of(database, tenant.company_id)
    index = {"first": 0, "middle": len(chain) // 2, "last but one": len(chain) - 2}[position]
    target = chain[index]
    try:
        async with as_an_attacker(database) as session:
            await session.execute(text("DELETE FROM audit_entries WHERE id = :id"), target)
        result = verify(database_url, "--company", tenant.company_id)
        assert result.returncode == 1, result.stdout + result.stderr
        assert "entries missing before it" in result.stdout
        assert chain[index + 1]["id"] in result.stdout
    finally:
        await put_back(database, target)
    assert await chain_holds(database, tenant.company_id)


async def test_concurrent_writers_keep_the_chain(
    client: httpx.AsyncClient, database: Database
) -> None:
    first, second = await register(client), await register(client)
    gateways = {t.company_id: await sandbox_gateway(client, t) for t in (first, second)}
    invoices = {
        t.company_id: [await create_invoice(client, t) for _ in range(8)] for t in (first, second)
    }
    calls = []
    for tenant in (first, second):
        calls += [pay(client, tenant, invoice["id"]) for invoice in invoices[tenant.company_id]]
        calls += [create_gateway(client, tenant, sandbox_payload(f"Sandbox {n}")) for n in range(8)]
        calls += [
            client.patch(
                f"/api/v1/gateways/{gateways[tenant.company_id]['id']}",
                json={"name": f"Renamed {n}"},
                headers=tenant.headers,
            )
            for n in range(4)
        ]
    await asyncio.gather(*calls)
    for tenant in (first, second):
        chain = await chain_of(database, tenant.company_id)
        assert sum(e["action"] == "payment.created" for e in chain) == 8
        assert sum(e["action"] == "gateway.created" for e in chain) == 9
        assert_linked(chain)
    async with database.transaction() as session:
        report = await verify_chains(session)
    assert report.ok, report.broken
