"""What a block of code sends to PostgreSQL, counted at the driver: SQLAlchemy's statements
and the hot statements (`kit.sql`) that go to psycopg directly alike."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from psycopg import AsyncCursor


@contextmanager
def statements_sent() -> Iterator[list[str]]:
    """The text of every statement this process sends while the block runs, in order
    (whitespace collapsed)."""
    sent: list[str] = []
    original = AsyncCursor.execute

    async def execute(self: AsyncCursor[Any], query: Any, *args: Any, **kwargs: Any) -> Any:
        text = query if isinstance(query, str) else query.decode()
        sent.append(" ".join(text.split()))
        return await original(self, query, *args, **kwargs)

    AsyncCursor.execute = execute  # type: ignore[method-assign]
    try:
        yield sent
    finally:
        AsyncCursor.execute = original  # type: ignore[method-assign]
