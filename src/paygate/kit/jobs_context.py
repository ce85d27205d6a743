"""The database a job uses: set once per process by whoever starts the worker."""

from __future__ import annotations

from paygate.db import Database

_database: Database | None = None


def set_job_database(database: Database) -> None:
    global _database
    _database = database


def job_database() -> Database:
    if _database is None:
        raise RuntimeError("the job database is not set (start jobs through paygate.jobs)")
    return _database
