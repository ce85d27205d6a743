"""When a failed delivery is tried again: Svix's schedule with jitter, about a day in all.

The first attempt is immediate; after the n-th failed attempt the next waits
RETRY_SCHEDULE[n-1], give or take JITTER (so endpoints that failed together are not all
retried in the same second). A timeout or a 429 waits at least a minute (the endpoint is
overloaded); a Retry-After header is honoured between the scheduled wait and twice it.
After the last entry the delivery has failed.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime

RETRY_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.2
OVERLOAD_PENALTY = timedelta(seconds=60)


def retry_after(value: str | None, now: datetime) -> timedelta | None:
    """A Retry-After header (seconds or an HTTP date) as a wait from `now`."""
    if not value:
        return None
    text = value.strip()
    try:
        return timedelta(seconds=max(0.0, float(text)))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(timedelta(0), moment - now)


def next_wait(
    attempt_number: int,
    *,
    overloaded: bool = False,
    asked: timedelta | None = None,
    rng: random.Random | None = None,
) -> timedelta | None:
    """How long after failed attempt `attempt_number` (1-based) to try again; None: no more."""
    if not 1 <= attempt_number <= len(RETRY_SCHEDULE):
        return None
    base = RETRY_SCHEDULE[attempt_number - 1]
    if overloaded:
        base = max(base, OVERLOAD_PENALTY)
    if asked is not None:
        base = min(max(asked, base), base * 2)
    factor = (rng or random).uniform(1 - JITTER, 1 + JITTER)
    return base * factor
