"""A unit of work's rows written in one statement.

The ORM's flush writes each new or changed row with a statement of its own, and its
bookkeeping costs more than the statements. On a hot path (settling a payment writes a
gateway call, an event, the payment, its attempt and the invoice) `write_together` sends
them as the data-modifying parts of one statement and tells the session they are stored,
so the next flush has nothing left to do. The statement's text is built once per shape
(which tables, which columns) and kept; only the values change from call to call.

Rows the ORM must write itself fall back to its flush: a deletion, a key the database makes
(an identity column), a default or an on-update value computed from the statement's
context, a relationship set on an object (the foreign keys it implies are filled in while
flushing).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, bindparam, inspect, text
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstanceState, Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import set_committed_value

from paygate.kit.sql import HotStatement, run

# (attribute, column) of each mapped class's own columns, read once.
_COLUMNS: dict[Mapper[Any], tuple[tuple[str, Column[Any]], ...]] = {}
# Mapped classes with a column the ORM computes on update (their changes need its flush).
_ON_UPDATE: set[Mapper[Any]] = set()
# Statements by shape: ("insert" | "update", table, columns written, key columns) per row.
_STATEMENTS: dict[tuple[Any, ...], HotStatement] = {}


class _NotHere(Exception):
    """This row needs the ORM's own flush."""


@dataclass(frozen=True)
class _Row:
    kind: str  # insert | update
    state: InstanceState[Any]
    values: dict[str, Any]  # attribute -> value written
    defaults: dict[str, Any]  # attribute -> default the object does not hold yet
    key: dict[str, Any]  # update: attribute -> primary key value


def _columns(mapper: Mapper[Any]) -> tuple[tuple[str, Column[Any]], ...]:
    found = _COLUMNS.get(mapper)
    if found is None:
        found = tuple(
            (prop.key, prop.columns[0])
            for prop in mapper.column_attrs
            if isinstance(prop.columns[0], Column)
        )
        _COLUMNS[mapper] = found
        if any(column.onupdate is not None for _, column in found):
            _ON_UPDATE.add(mapper)
    return found


def _relationships_changed(state: InstanceState[Any]) -> bool:
    """A relationship set on the object: the ORM fills the foreign keys it implies only
    while flushing, so such rows are left to it."""
    return any(
        state.attrs[relationship.key].history.has_changes()
        for relationship in state.mapper.relationships
    )


def _new_row(state: InstanceState[Any]) -> _Row:
    values: dict[str, Any] = {}
    defaults: dict[str, Any] = {}
    for attribute, column in _columns(state.mapper):
        if attribute in state.dict:
            values[attribute] = state.dict[attribute]
        elif column.default is not None:
            default = column.default
            if getattr(default, "is_scalar", False):
                defaults[attribute] = values[attribute] = getattr(default, "arg", None)
            elif getattr(default, "is_callable", False):
                # SQLAlchemy wraps a plain callable to take the statement's context.
                defaults[attribute] = values[attribute] = getattr(default, "arg")(None)  # noqa: B009
            else:
                raise _NotHere
        if column.primary_key and values.get(attribute) is None:
            raise _NotHere  # the database makes the key: only the ORM reads it back
    return _Row("insert", state, values, defaults, {})


def _changed_row(state: InstanceState[Any]) -> _Row | None:
    columns = _columns(state.mapper)
    if state.mapper in _ON_UPDATE:
        raise _NotHere  # a value computed as the row is updated: the ORM's to apply
    unmodified = state.unmodified
    values = {
        attribute: state.dict[attribute]
        for attribute, _ in columns
        if attribute not in unmodified and attribute in state.dict
    }
    if not values:
        return None
    identity = state.mapper.primary_key_from_instance(state.obj())
    key = {
        state.mapper.get_property_by_column(column).key: value
        for column, value in zip(state.mapper.primary_key, identity, strict=True)
    }
    return _Row("update", state, values, {}, key)


def _statement(rows: Sequence[_Row], dialect: Dialect) -> tuple[HotStatement, dict[str, Any]]:
    shape = tuple((row.kind, row.state.mapper, tuple(row.values), tuple(row.key)) for row in rows)
    params: dict[str, Any] = {}
    for index, row in enumerate(rows):
        params.update({f"w{index}_{name}": value for name, value in row.values.items()})
        params.update({f"w{index}_key_{name}": value for name, value in row.key.items()})
    statement = _STATEMENTS.get(shape)
    if statement is None:
        statement = _build(rows, dialect)
        _STATEMENTS[shape] = statement
    return statement, params


def _build(rows: Sequence[_Row], dialect: Dialect) -> HotStatement:
    quote = dialect.identifier_preparer.quote
    parts: list[str] = []
    binds = []
    for index, row in enumerate(rows):
        mapper = row.state.mapper
        table = quote(mapper.local_table.name)  # type: ignore[attr-defined]
        column = {attribute: col for attribute, col in _columns(mapper)}
        names = {attribute: f"w{index}_{attribute}" for attribute in row.values}
        binds += [bindparam(names[a], type_=column[a].type) for a in row.values]
        if row.kind == "insert":
            written = ", ".join(quote(column[a].name) for a in row.values)
            placeholders = ", ".join(f":{names[a]}" for a in row.values)
            parts.append(f"INSERT INTO {table} ({written}) VALUES ({placeholders})")  # noqa: S608
        else:
            keys = {attribute: f"w{index}_key_{attribute}" for attribute in row.key}
            binds += [bindparam(keys[a], type_=column[a].type) for a in row.key]
            assignments = ", ".join(f"{quote(column[a].name)} = :{names[a]}" for a in row.values)
            match = " AND ".join(f"{quote(column[a].name)} = :{keys[a]}" for a in row.key)
            parts.append(f"UPDATE {table} SET {assignments} WHERE {match}")  # noqa: S608
    *ctes, main = parts
    prefix = "WITH " + ", ".join(f"w{i} AS ({p})" for i, p in enumerate(ctes)) + " " if ctes else ""
    # Names and columns come from paygate's own tables, values only through bound parameters.
    return HotStatement(text(prefix + main).bindparams(*binds))


_DEFERRED = "paygate.writes_deferred"


@asynccontextmanager
async def writes_deferred(session: AsyncSession) -> AsyncIterator[None]:
    """Within the block `write_together` writes nothing; the block's rows are written
    together when it ends (normally): a step that writes as it goes (settle) and what its
    caller adds after it (the stored answer, the deliveries) become one statement."""
    session.info[_DEFERRED] = True
    try:
        yield
    finally:
        session.info.pop(_DEFERRED, None)
    await write_together(session)


async def write_together(session: AsyncSession) -> None:
    """Write the session's new and changed rows with one statement (or none when nothing
    changed); falls back to the ORM's flush when a row cannot be written this way. Inside
    `writes_deferred` it leaves them for the block's end."""
    if session.info.get(_DEFERRED):
        return
    if session.deleted:
        await session.flush()
        return
    new = [inspect(obj) for obj in session.new]
    dirty = [inspect(obj) for obj in session.dirty]
    if any(_relationships_changed(state) for state in (*new, *dirty)):
        await session.flush()
        return
    try:
        rows = [_new_row(state) for state in new]
        rows += [row for state in dirty if (row := _changed_row(state)) is not None]
    except _NotHere:
        await session.flush()
        return
    if not rows:
        return
    statement, params = _statement(rows, session.get_bind().dialect)
    await run(session, statement, params, sees_pending=False)  # these are the pending rows
    # Stored: the new rows become persistent (what the database filled in, such as
    # created_at, loads when read), and the changed ones clean, so the flush at commit
    # finds nothing to do.
    for row in rows:
        obj = row.state.obj()
        if row.kind == "insert":
            session.expunge(obj)
            make_transient_to_detached(obj)
            session.add(obj)
            for attribute, value in row.defaults.items():
                set_committed_value(obj, attribute, value)
        else:
            # What a flush does to a row it wrote (the ORM's own step; no public spelling).
            row.state._commit_all(row.state.dict, session.sync_session.identity_map)
