"""The migrations create exactly what the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from paygate.db import sqlalchemy_url
from paygate.migrations_check import include_name
from paygate.models import metadata


def test_models_and_migrations_agree(database_url: str) -> None:
    engine = create_engine(sqlalchemy_url(database_url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_name": include_name}
            )
            assert compare_metadata(context, metadata) == []
    finally:
        engine.dispose()
