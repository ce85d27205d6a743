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


def configure_logging(*, json_logs: bool, level: str = "INFO") -> None:
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
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), 20)
        ),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    # Libraries that log through the standard library go through the same level.
    logging.basicConfig(
        level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s"
    )
    for noisy in ("httpx", "httpcore", "stripe"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
