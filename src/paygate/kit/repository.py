"""The one repository pattern: every query of a tenant-owned table is scoped to one company."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Generic, Protocol, TypeVar

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from paygate.kit.errors import not_found
from paygate.kit.pagination import PageParams


class TenantRow(Protocol):
    id: Any
    company_id: Any


RowT = TypeVar("RowT")


class TenantRepository(Generic[RowT]):
    """Base for repositories of rows that carry `company_id`.

    Another company's row is simply not found: callers answer 404 as if it did not exist.
    """

    model: type[RowT]
    what: str = "object"

    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    def _column(self, name: str) -> InstrumentedAttribute[Any]:
        column: InstrumentedAttribute[Any] = getattr(self.model, name)
        return column

    @staticmethod
    def _id_of(row: object) -> object:
        return getattr(row, "id")  # noqa: B009  (the model is generic)

    def scoped(self) -> Select[RowT]:
        return select(self.model).where(self._column("company_id") == self.company_id)

    async def find(
        self, object_id: str, *, for_update: bool = False, among: Select[RowT] | None = None
    ) -> RowT | None:
        """The row with this id among `among` (default: `scoped()`), or None."""
        statement = (self.scoped() if among is None else among).where(
            self._column("id") == object_id
        )
        if for_update:
            # populate_existing: an object this session read earlier is refreshed from the
            # locked row. Without it, a read-then-update (the edit pages) would write back
            # what it read first and undo a change committed in between (a rotated secret).
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def get(
        self, object_id: str, *, for_update: bool = False, among: Select[RowT] | None = None
    ) -> RowT:
        row = await self.find(object_id, for_update=for_update, among=among)
        if row is None:
            raise not_found(self.what)
        return row

    async def add(self, row: RowT) -> RowT:
        if getattr(row, "company_id", None) != self.company_id:
            raise ValueError("a row must belong to the repository's company")
        self.session.add(row)
        await self.session.flush()
        return row

    async def page(
        self,
        statement: Select[RowT],
        params: PageParams,
    ) -> tuple[Sequence[RowT], str | None]:
        """Newest first by id; returns the rows and the cursor for the next page."""
        id_column = self._column("id")
        if params.cursor:
            statement = statement.where(id_column < params.cursor)
        statement = statement.order_by(id_column.desc()).limit(params.limit + 1)
        rows = (await self.session.execute(statement)).scalars().all()
        last = rows[params.limit - 1] if len(rows) > params.limit else None
        next_cursor = str(self._id_of(last)) if last is not None else None
        return rows[: params.limit], next_cursor


def apply_filters(
    statement: Select[RowT],
    filters: Sequence[tuple[object | None, Callable[[Any], Any]]],
) -> Select[RowT]:
    """Add a WHERE clause for every filter whose value was given."""
    for value, clause in filters:
        if value is not None:
            statement = statement.where(clause(value))
    return statement


__all__ = ["TenantRepository", "apply_filters", "select"]
