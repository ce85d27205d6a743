"""Public ids: a type prefix and a time-sortable random part (`gw_01JD...`)."""

from __future__ import annotations

import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def _encode(number: int, length: int) -> str:
    chars = []
    for _ in range(length):
        number, index = divmod(number, 32)
        chars.append(_CROCKFORD[index])
    return "".join(reversed(chars))


def new_id(prefix: str) -> str:
    """A ULID (48-bit millisecond time + 80 random bits) behind `prefix_`."""
    millis = time.time_ns() // 1_000_000
    return f"{prefix}_{_encode(millis, 10)}{_encode(secrets.randbits(80), 16)}"


def is_id(value: str, prefix: str) -> bool:
    head, _, body = value.partition("_")
    return head == prefix and len(body) == 26 and all(c in _CROCKFORD for c in body)
