"""`kit.writes.write_together`: new and changed rows in one statement, then nothing left to
flush; a deletion falls back to the ORM's own flush."""

from __future__ import annotations

import secrets
from datetime import timedelta

import httpx
from sqlalchemy import select, text
from sqlalchemy.orm import selectinload

from paygate.db import Database
from paygate.invoices.models import Invoice, InvoiceLine
from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id
from paygate.kit.sql import HotStatement, run
from paygate.kit.writes import write_together, writes_deferred
from paygate.security.models import RevokedToken
from tests.conftest import Tenant
from tests.payments.helpers import create_invoice
from tests.statements import statements_sent


async def test_new_and_changed_rows_are_written_with_one_statement(database: Database) -> None:
    soon = utcnow() + timedelta(hours=1)
    first, second = (f"kit-writes-{secrets.token_hex(6)}" for _ in range(2))
    async with database.transaction() as session:
        session.add(RevokedToken(identifier=first, expires_at=soon))
    with statements_sent() as statements:
        async with database.transaction() as session:
            kept = await session.get(RevokedToken, first)
            assert kept is not None
            statements.clear()
            kept.expires_at = soon + timedelta(hours=1)
            session.add(RevokedToken(identifier=second, expires_at=soon))
            await write_together(session)
            assert len(statements) == 1
            assert "INSERT INTO revoked_tokens" in statements[0]
            assert "UPDATE revoked_tokens" in statements[0]
            assert not session.new
            assert not session.is_modified(kept)
            assert not session.dirty  # the flush at commit has nothing to look at
            await session.flush()
            assert len(statements) == 1  # nothing was left for the ORM to write
    async with database.transaction() as session:
        result = await session.execute(
            select(RevokedToken.identifier, RevokedToken.expires_at).where(
                RevokedToken.identifier.in_([first, second])
            )
        )
        rows = {identifier: expires_at for identifier, expires_at in result.tuples()}
    assert rows == {first: soon + timedelta(hours=1), second: soon}


async def test_a_deletion_is_left_to_the_orm(database: Database) -> None:
    identifier = f"kit-writes-{secrets.token_hex(6)}"
    async with database.transaction() as session:
        session.add(RevokedToken(identifier=identifier, expires_at=utcnow()))
    async with database.transaction() as session:
        row = await session.get(RevokedToken, identifier)
        await session.delete(row)
        await write_together(session)
        assert await session.get(RevokedToken, identifier) is None
    async with database.transaction() as session:
        assert await session.get(RevokedToken, identifier) is None


async def test_a_child_added_through_a_relationship_is_left_to_the_orm(
    client: httpx.AsyncClient, tenant: Tenant, database: Database
) -> None:
    """The line's invoice_id exists only once the ORM flushes the relationship."""
    created = await create_invoice(client, tenant)
    async with database.transaction() as session:
        invoice = (
            await session.execute(
                select(Invoice)
                .where(Invoice.id == created["id"])
                .options(selectinload(Invoice.lines))
            )
        ).scalar_one()
        invoice.lines.append(
            InvoiceLine(
                id=new_id("li"),
                position=2,
                description="Extra",
                quantity=1,
                unit_amount=1,
                amount=1,
            )
        )
        await write_together(session)
    async with database.transaction() as session:
        lines = (
            (
                await session.execute(
                    select(InvoiceLine.description).where(InvoiceLine.invoice_id == created["id"])
                )
            )
            .scalars()
            .all()
        )
    assert sorted(lines) == ["Consulting", "Extra"]


_COUNT = HotStatement(
    text("SELECT count(*) AS n FROM revoked_tokens WHERE identifier = ANY(:identifiers)")
)


async def test_a_hot_statement_sees_what_the_session_has_pending_unless_told_not_to(
    database: Database,
) -> None:
    first, second = (f"kit-sql-{secrets.token_hex(6)}" for _ in range(2))
    params = {"identifiers": [first, second]}
    async with database.transaction() as session:
        session.add(RevokedToken(identifier=first, expires_at=utcnow()))
        (row,) = await run(session, _COUNT, params, sees_pending=False)
        assert row.n == 0
        assert session.new
        (row,) = await run(session, _COUNT, params)
        assert row.n == 1
        assert not session.new
        session.add(RevokedToken(identifier=second, expires_at=utcnow()))
    async with database.transaction() as session:
        (row,) = await run(session, _COUNT, params)
        assert row.n == 2


async def test_deferred_writes_go_out_together_when_the_block_ends(database: Database) -> None:
    first, second = (f"kit-writes-{secrets.token_hex(6)}" for _ in range(2))
    soon = utcnow() + timedelta(hours=1)
    with statements_sent() as statements:
        async with database.transaction() as session:
            async with writes_deferred(session):
                session.add(RevokedToken(identifier=first, expires_at=soon))
                await write_together(session)  # a step that writes as it goes: deferred
                assert session.new
                assert not statements
                session.add(RevokedToken(identifier=second, expires_at=soon))
            assert not session.new
    assert len(statements) == 1
    assert statements[0].count("INSERT INTO revoked_tokens") == 2
