"""A unit of work's rows written in one statement.

The ORM's flush writes each new or changed row with a statement of its own, and its
bookkeeping costs more than the statements. On a hot path (settling a payment writes a
gateway call, an event, the payment, its attempt and the invoice) `write_together` sends
them as the data-modifying parts of one statement and tells the session they are stored,
so the next flush has nothing left to do. Rows whose key the database makes (an identity
column) need its answer: then the ORM's own flush does the work.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Delete, Insert, Table, Update, insert, inspect, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value


def _table(state: InstanceState[Any]) -> Table:
    return cast(Table, state.mapper.local_table)


def _insert(state: InstanceState[Any]) -> Insert | None:
    mapper = state.mapper
    values = {
        prop.columns[0].key: state.dict[prop.key]
        for prop in mapper.column_attrs
        if prop.key in state.dict
    }
    if any(values.get(column.key or "") is None for column in mapper.primary_key):
        return None
    return insert(_table(state)).values(values)


def _changes(state: InstanceState[Any]) -> dict[str, Any]:
    return {
        prop.key: state.dict[prop.key]
        for prop in state.mapper.column_attrs
        if state.attrs[prop.key].history.has_changes()
    }


async def write_together(session: AsyncSession) -> None:
    """Write the session's new and changed rows with one statement (or none when nothing
    changed); falls back to the ORM's flush when a row cannot be written this way."""
    new = [inspect(obj) for obj in session.new]
    changed = [(inspect(obj), _changes(inspect(obj))) for obj in session.dirty]
    changed = [(state, changes) for state, changes in changed if changes]
    if session.deleted or not (new or changed):
        await session.flush()
        return
    statements: list[Insert | Update | Delete] = []
    for state in new:
        statement = _insert(state)
        if statement is None:
            await session.flush()
            return
        statements.append(statement)
    for state, changes in changed:
        mapper = state.mapper
        key = mapper.primary_key_from_instance(state.obj())
        statements.append(
            update(_table(state))
            .where(
                *(column == value for column, value in zip(mapper.primary_key, key, strict=True))
            )
            .values(
                {mapper.get_property(name).columns[0]: value for name, value in changes.items()}
            )
        )
    main, *others = statements
    for index, other in enumerate(others):
        main = main.add_cte(other.cte(f"write_{index}"))
    with session.no_autoflush:  # the rows are written here, not flushed first
        await session.execute(main)
    # Stored: the new rows become persistent (what the database filled in, such as
    # created_at, loads when read), and the changed ones clean.
    for state in new:
        obj = state.obj()
        session.expunge(obj)
        make_transient_to_detached(obj)
        session.add(obj)
    for state, changes in changed:
        for name, value in changes.items():
            set_committed_value(state.obj(), name, value)
