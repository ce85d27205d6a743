from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.web.helpers import WebUser, new_client, sign_up


@pytest.fixture
async def owner(app: Any) -> AsyncIterator[WebUser]:
    """A company's owner, signed up and signed in through the pages."""
    async with new_client(app) as client:
        yield await sign_up(client, "Acme Web")


@pytest.fixture
async def rival(app: Any) -> AsyncIterator[WebUser]:
    """The second company every scenario keeps in the database."""
    async with new_client(app) as client:
        yield await sign_up(client, "Globex Web")
