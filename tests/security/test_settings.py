"""Production refuses to start with development secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from paygate.security.crypto import generate_master_key
from paygate.settings import Mode, Settings


def test_production_refuses_the_default_jwt_secret() -> None:
    with pytest.raises(ValidationError, match="PAYGATE_JWT_SECRET must be set"):
        Settings(mode=Mode.PRODUCTION, master_keys=generate_master_key("k"))  # type: ignore[arg-type]


def test_production_refuses_a_missing_or_default_master_key() -> None:
    with pytest.raises(ValidationError, match="PAYGATE_MASTER_KEYS"):
        Settings(mode=Mode.PRODUCTION, jwt_secret="x" * 40)  # type: ignore[arg-type]
    from paygate.settings import DEV_MASTER_KEYS

    with pytest.raises(ValidationError, match="PAYGATE_MASTER_KEYS"):
        Settings(mode=Mode.PRODUCTION, jwt_secret="x" * 40, master_keys=DEV_MASTER_KEYS)  # type: ignore[arg-type]


def test_production_starts_with_real_secrets(tmp_path) -> None:  # type: ignore[no-untyped-def]
    key_file = tmp_path / "keys"
    key_file.write_text(generate_master_key("k") + "\n")
    settings = Settings(mode=Mode.PRODUCTION, jwt_secret="x" * 40, master_key_file=key_file)  # type: ignore[arg-type]
    assert settings.master_keys_text().startswith("k:")
