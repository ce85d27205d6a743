"""What the worker would do, for browser tests whose live server runs none.

Sync Playwright keeps an event loop marked running in the test's thread, so each of these
runs its coroutine on a loop of its own in another thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from datetime import timedelta
from typing import Any

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import checks
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from tests.monitoring.helpers import schedule_only


def in_thread(make: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run a coroutine on a loop of its own; its exception is raised here."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(make())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=60)
    if failure:
        raise failure[0]


def check_rounds(settings: Settings, ids: list[str], rounds: int) -> None:
    """`rounds` minutes of health checks of these gateways (only these), starting now."""

    async def run() -> None:
        assert settings.database_url is not None
        database = Database(settings.database_url)
        keyring = Keyring.parse(settings.master_keys_text())
        try:
            start = utcnow()
            await schedule_only(database, settings, ids, start)
            for minute in range(rounds):
                moment = start + minute * timedelta(minutes=1)
                await checks.run_round(database, keyring, settings, now=moment)
        finally:
            await database.dispose()

    in_thread(run)
