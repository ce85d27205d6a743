"""Hot statements: SQL that SQLAlchemy compiles once, sent on the session's own psycopg
connection.

Sending a statement through SQLAlchemy's async session costs about 0.3 ms of CPU more than
psycopg's own execute (building the statement, its cache key, the result machinery, the
greenlet bridge), and loading ORM objects costs more again. A payment makes a dozen
statements, so on the paths that run per payment or per received webhook that cost was
most of paygate's time (decisions.md §23). There a statement is a `HotStatement`:

- SQLAlchemy stays the one database layer: it builds the SQL (a Core construct or
  `text()`), compiles it once for the dialect, converts the parameters with the columns'
  own bind processors, and owns the connection and its transaction (begin, commit,
  rollback). `run` only sends the compiled text on that same connection, so it sees and
  is part of what the session did before.
- Before it is sent, the session's pending ORM changes are flushed, as the ORM's own
  statements autoflush (not inside `session.no_autoflush`); a statement that cannot
  depend on them says `sees_pending=False` (a hot path keeps its rows for one
  `write_together` then).
- `attach` turns a row into a persistent ORM object of the session, as a query would
  have, for rows the caller goes on to change through the ORM.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, NamedTuple, TypeVar

from psycopg import AsyncConnection
from psycopg.pq import ExecStatus
from psycopg.rows import namedtuple_row
from sqlalchemy import Executable, inspect
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapper, make_transient_to_detached
from sqlalchemy.orm.attributes import instance_dict, set_committed_value
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement, Label

ModelT = TypeVar("ModelT")

_Processor = Callable[[Any], Any]


class _Compiled(NamedTuple):
    sql: str
    processors: tuple[tuple[str, _Processor], ...]
    defaults: dict[str, Any]  # values the statement carries itself (a LIMIT's, say)


class HotStatement:
    """One statement, compiled on first use and kept (statements are module constants)."""

    __slots__ = ("_compiled", "statement")

    def __init__(self, statement: Executable) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None

    def compiled(self, dialect: Dialect) -> _Compiled:
        if self._compiled is None:
            self._compiled = compile_for_driver(self.statement, dialect)
        return self._compiled


def compile_for_driver(statement: Executable, dialect: Dialect) -> _Compiled:
    """The statement's text as the driver takes it, and the parameters' bind processors
    (JSON columns wrapped for psycopg, for one)."""
    assert isinstance(statement, ClauseElement)
    compiled = statement.compile(dialect=dialect)
    assert isinstance(compiled, SQLCompiler)
    processors = []
    for name, bind in compiled.binds.items():
        processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if processor is not None:
            processors.append((name, processor))
    defaults = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
    return _Compiled(compiled.string, tuple(processors), defaults)


async def driver_connection(session: AsyncSession) -> AsyncConnection[Any]:
    """The psycopg connection of the session's transaction (checked out if it has none),
    remembered for the rest of that transaction. Keyed by the innermost transaction: a
    savepoint (`begin_nested`) is begun by asking the session for its connection."""
    held: AsyncConnection[Any] | None = _memo(session, _DRIVER, _innermost(session)).get("")
    if held is not None:
        return held
    connection = await session.connection()  # may begin the transaction it belongs to
    driver: AsyncConnection[Any] = connection.sync_connection.connection.driver_connection  # type: ignore[union-attr,assignment]
    _memo(session, _DRIVER, _innermost(session))[""] = driver
    return driver


def transaction_memo(session: AsyncSession, name: str) -> dict[str, Any]:
    """A dict kept on the session for its current transaction only (the next transaction
    starts with an empty one): for what a transaction must keep referenced, which the
    identity map (it holds objects weakly) may forget."""
    return _memo(session, name, session.sync_session.get_transaction())


def _memo(session: AsyncSession, name: str, transaction: object) -> dict[str, Any]:
    held = session.info.get(name)
    if held is None or held[0] is not transaction:
        held = session.info[name] = (transaction, {})
    memo: dict[str, Any] = held[1]
    return memo


def _innermost(session: AsyncSession) -> object:
    sync = session.sync_session
    return sync.get_nested_transaction() or sync.get_transaction()


_DRIVER = "paygate.driver_connection"


async def run(
    session: AsyncSession,
    statement: HotStatement,
    params: Mapping[str, Any] | None = None,
    *,
    sees_pending: bool = True,
) -> list[Any]:
    """Send the statement in the session's transaction; its rows (named tuples), if any.
    `sees_pending=False`: the statement reads or writes nothing the session has pending,
    which then stays pending."""
    sync = session.sync_session
    if sees_pending and sync.autoflush and (sync.new or sync.dirty or sync.deleted):
        await session.flush()
    connection = await driver_connection(session)
    compiled = statement.compiled(session.get_bind().dialect)
    values = {**compiled.defaults, **params} if params else dict(compiled.defaults)
    for name, processor in compiled.processors:
        if name in values:
            values[name] = processor(values[name])
    async with connection.cursor(row_factory=namedtuple_row) as cursor:
        await cursor.execute(compiled.sql, values)
        # Not `cursor.description`: it builds a column object per column on every call.
        result = cursor.pgresult
        if result is None or result.status != ExecStatus.TUPLES_OK:
            return []
        return await cursor.fetchall()


class _Mapped(NamedTuple):
    columns: tuple[tuple[str, str], ...]  # (attribute, column name) of its own columns
    key: tuple[str, ...]  # the primary key's attributes


_MAPPED: dict[Mapper[Any], _Mapped] = {}


def _mapped(mapper: Mapper[Any]) -> _Mapped:
    found = _MAPPED.get(mapper)
    if found is None:
        found = _MAPPED[mapper] = _Mapped(
            tuple((prop.key, prop.columns[0].name) for prop in mapper.column_attrs),
            tuple(mapper.get_property_by_column(column).key for column in mapper.primary_key),
        )
    return found


def attach(session: AsyncSession, model: type[ModelT], row: Any, *, prefix: str = "") -> ModelT:
    """The row as a persistent object of `model` in the session: the object the session
    already holds for that key (refreshed from the row unless it has unsaved changes, as
    the row may have been read under a lock), or a new one. `prefix` selects the row's
    columns labelled `<prefix><column>` (several tables in one row)."""
    mapper: Mapper[ModelT] = inspect(model)
    mapped = _mapped(mapper)
    values = row._asdict()
    columns = {attribute: values[prefix + name] for attribute, name in mapped.columns}
    key = mapper.identity_key_from_primary_key(tuple(columns[a] for a in mapped.key))
    held = session.sync_session.identity_map.get(key)
    if held is not None:
        if inspect(held).modified:
            return held
        for attribute, value in columns.items():
            set_committed_value(held, attribute, value)
        result: ModelT = held
        return result
    obj = mapper.class_manager.new_instance()
    instance_dict(obj).update(columns)  # loaded values: made committed just below
    make_transient_to_detached(obj)
    session.add(obj)
    return obj


def labelled(model: type[Any], prefix: str = "") -> list[Label[Any]]:
    """The model's columns labelled `<prefix><column>`: a select list for
    `attach(..., prefix=)` when one row holds several tables."""
    table = inspect(model).local_table
    return [column.label(prefix + column.name) for column in table.columns]
