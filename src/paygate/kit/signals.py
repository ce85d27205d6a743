"""In-transaction signals: one domain tells others about a change it just wrote.

A listener runs inside the transaction of the change (so a row it writes, or a job it
defers, commits with the change or not at all). Domains connect their listeners when they
are imported; the sender knows none of them, so imports keep running one way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")

Listener = Callable[[AsyncSession, T], Awaitable[None]]


class Signal(Generic[T]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._listeners: list[Listener[T]] = []

    def connect(self, listener: Listener[T]) -> Listener[T]:
        """Add a listener (usable as a decorator); connecting one twice keeps one."""
        if listener not in self._listeners:
            self._listeners.append(listener)
        return listener

    def disconnect(self, listener: Listener[T]) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    @property
    def has_listeners(self) -> bool:
        return bool(self._listeners)

    async def send(self, session: AsyncSession, payload: T) -> None:
        # An exception in a listener rolls the whole change back: a change that could not
        # be announced is not made.
        for listener in self._listeners:
            await listener(session, payload)
