"""Gateway credentials with a grace period: a replaced secret stays valid for a while.

When an admin replaces a secret (a webhook signing secret, an API key), requests signed
with the old one may still be in flight: a webhook the gateway sent a second before the
change, retried later. So the replaced value is kept, encrypted in the same envelope as
the current secrets under the key `previous:<field>`, until `previous_valid_until` in the
field's hint; then it is wiped (on the next write of the gateway, or by the sweeper in
gateways/tasks.py, whichever comes first).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from paygate.gateways.models import Gateway
from paygate.security.crypto import Keyring, SealedSecrets

PREVIOUS_PREFIX = "previous:"


@dataclass(frozen=True)
class Envelope:
    """A gateway's decrypted secrets: the current ones and the replaced ones kept for grace."""

    current: dict[str, str]
    previous: dict[str, str]

    @classmethod
    def of(cls, values: dict[str, str]) -> Envelope:
        current = {k: v for k, v in values.items() if not k.startswith(PREVIOUS_PREFIX)}
        previous = {
            k.removeprefix(PREVIOUS_PREFIX): v
            for k, v in values.items()
            if k.startswith(PREVIOUS_PREFIX)
        }
        return cls(current, previous)

    def plaintext(self) -> dict[str, str]:
        return {**self.current, **{PREVIOUS_PREFIX + k: v for k, v in self.previous.items()}}


def open_envelope(gateway: Gateway, keyring: Keyring) -> Envelope:
    """Decrypt; raises KeyringError when the keys cannot open it."""
    sealed = SealedSecrets(gateway.key_id, gateway.wrapped_data_key, gateway.secret_ciphertext)
    return Envelope.of(keyring.open(sealed, gateway.aad()))


def previous_valid_until(gateway: Gateway, field: str) -> datetime | None:
    """Until when the replaced value of `field` is still accepted; None when none is kept."""
    raw = (gateway.secret_hints or {}).get(field, {}).get("previous_valid_until")
    if not raw:
        return None
    try:
        return datetime.fromisoformat(raw)
    except ValueError:
        return None


def accepted_previous_until(gateway: Gateway, field: str, now: datetime) -> datetime | None:
    """The end of grace of `field`'s previous value if it is still accepted at `now`."""
    until = previous_valid_until(gateway, field)
    return until if until is not None and now < until else None


def secrets_for_verification(
    gateway: Gateway, keyring: Keyring, field: str, now: datetime
) -> list[str]:
    """The secrets a signature on `field` may be checked against at `now`, current first.

    The previous value is included only while its grace lasts, even before the sweeper
    has wiped it. Raises KeyringError when the secrets cannot be decrypted: a webhook
    must then be refused, never accepted unverified.
    """
    envelope = open_envelope(gateway, keyring)
    accepted = [envelope.current[field]] if envelope.current.get(field) else []
    previous = envelope.previous.get(field)
    if previous and accepted_previous_until(gateway, field, now) is not None:
        accepted.append(previous)
    return accepted


def next_expiry(hints: dict[str, dict[str, str]]) -> datetime | None:
    """The earliest end of grace among the previous values kept, for the sweeper."""
    ends = [
        datetime.fromisoformat(hint["previous_valid_until"])
        for hint in hints.values()
        if hint.get("previous_valid_until")
    ]
    return min(ends) if ends else None


def grace_end(now: datetime, grace: timedelta) -> str | None:
    return (now + grace).isoformat() if grace > timedelta(0) else None
