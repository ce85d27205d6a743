"""Alembic locations, and whether the database is at the newest migration."""

from __future__ import annotations

from pathlib import Path

from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # ConfigParser interpolation: a literal % in the URL must be doubled.
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    return config


def include_name(name: str | None, type_: str, parent_names: object) -> bool:
    """Procrastinate owns its tables; autogenerate must not try to drop them."""
    owned_by_procrastinate = (name or "").startswith(("procrastinate_", "idx_procrastinate"))
    return not (type_ in ("table", "index") and owned_by_procrastinate)


def head_revision() -> str | None:
    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


async def current_revision(connection: AsyncConnection) -> str | None:
    exists = (await connection.execute(text("SELECT to_regclass('alembic_version')"))).scalar()
    if exists is None:
        return None
    return (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalar()
