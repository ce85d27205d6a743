from __future__ import annotations

import pytest

from paygate.security.crypto import Keyring
from paygate.settings import Settings


@pytest.fixture(scope="session")
def keyring(settings: Settings) -> Keyring:
    return Keyring.parse(settings.master_keys_text())
