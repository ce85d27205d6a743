"""Public ids: a type prefix and a time-sortable random part (`gw_01JD...`)."""

from __future__ import annotations

import secrets
import threading
import time
from typing import Annotated

from fastapi import Path

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ID_MAX_LENGTH = 40


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, index = divmod(number, 32)
        chars.append(_CROCKFORD[index])
    return "".join(reversed(chars))


_RANDOM_MAX = (1 << 80) - 1
_lock = threading.Lock()
_last: tuple[int, int] = (0, 0)


def new_id(prefix: str) -> str:
    """A ULID (48-bit millisecond time + 80 random bits) behind `prefix_`.

    Monotonic within the process (the ULID spec's monotonic mode): an id minted in the same
    millisecond as the previous one (or while the clock steps back) takes the previous
    random part plus one, so ids sort in the order they were made and "newest first by id"
    holds even for rows created in one tight loop."""
    global _last
    with _lock:
        millis = time.time_ns() // 1_000_000
        last_millis, last_random = _last
        if millis > last_millis:
            random = secrets.randbits(80)
        elif last_random < _RANDOM_MAX:
            millis, random = last_millis, last_random + 1
        else:
            millis, random = last_millis + 1, secrets.randbits(80)
        _last = (millis, random)
    return f"{prefix}_{_encode(millis, 10)}{_encode(random, 16)}"


def is_id(value: str, prefix: str) -> bool:
    head, _, body = value.partition("_")
    return head == prefix and len(body) == 26 and all(c in _CROCKFORD for c in body)


# Every id in a URL path. The bound is the id columns' (String(40)) and is declared in the
# OpenAPI document; it is not a 422: a longer id is simply one that does not exist, and
# unknown ids answer 404 like another tenant's (the tenancy rule), never a database error.
ObjectId = Annotated[
    str, Path(description="The object's id", json_schema_extra={"maxLength": ID_MAX_LENGTH})
]
