"""What adapter tests record: every gateway call and log line, checked for leaked secrets."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from structlog.testing import capture_logs

from paygate.gateways.adapters.base_http import GatewayCallRecord, recording_gateway_calls


class Recorded:
    """The gateway calls made during a test, and strings that must never appear in them."""

    def __init__(
        self, calls: list[GatewayCallRecord], logs: list[Any], forbidden: Iterable[str]
    ) -> None:
        self.calls = calls
        self.logs = logs
        self.forbidden: list[str] = list(forbidden)

    def forbid(self, *texts: str | None) -> None:
        self.forbidden.extend(t for t in texts if t)

    def operations(self) -> list[str]:
        return [c.operation for c in self.calls]

    def check(self) -> None:
        said = [json.dumps(asdict(c), default=str) for c in self.calls]
        said += [repr(e) for e in self.logs]
        for text in said:
            for secret in self.forbidden:
                assert secret not in text, f"{secret!r} leaked into {text}"
        for call in self.calls:
            # Every call says what was asked.
            assert call.request, call


@contextmanager
def recording(forbidden: Iterable[str]) -> Iterator[Recorded]:
    """Record the block's calls and logs, then check none of them holds a forbidden string."""
    with capture_logs() as logs, recording_gateway_calls() as calls:
        found = Recorded(calls, logs, forbidden)
        yield found
    found.check()
