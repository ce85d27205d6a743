"""What a job needs from its process (database, settings, master keys): set once by whoever
starts the worker."""

from __future__ import annotations

from dataclasses import dataclass

from paygate.db import Database
from paygate.security.crypto import Keyring
from paygate.settings import Settings


@dataclass(frozen=True)
class JobContext:
    database: Database
    settings: Settings
    keyring: Keyring


_context: JobContext | None = None


def set_job_context(context: JobContext) -> None:
    global _context
    _context = context


def job_context() -> JobContext:
    if _context is None:
        raise RuntimeError("the job context is not set (start jobs through paygate.jobs)")
    return _context


def job_database() -> Database:
    return job_context().database
