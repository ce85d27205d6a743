from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.monitoring.signals import GatewayStatusChange, gateway_status_changed
from paygate.security.crypto import Keyring
from paygate.settings import Settings


@pytest.fixture(scope="session")
def keyring(settings: Settings) -> Keyring:
    return Keyring.parse(settings.master_keys_text())


@pytest.fixture
def announced() -> Iterator[list[tuple[GatewayStatusChange, bool]]]:
    """What gateway_status_changed sent, and whether a transaction was open at the time."""
    seen: list[tuple[GatewayStatusChange, bool]] = []

    async def listener(session: AsyncSession, change: GatewayStatusChange) -> None:
        seen.append((change, session.in_transaction()))

    gateway_status_changed.connect(listener)
    yield seen
    gateway_status_changed.disconnect(listener)
