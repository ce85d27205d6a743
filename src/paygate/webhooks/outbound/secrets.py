"""Endpoint signing secrets: `whsec_` + base64 of random bytes, sealed with envelope
encryption, and the signatures a delivery carries (two during a rotation window).

A rotated-out secret stays in the same envelope as "previous" until its window ends; while
it lasts, deliveries are signed with both, so a receiver can switch secrets at its own pace
(the Standard Webhooks `webhook-signature` header holds space-separated signatures).
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from standardwebhooks.webhooks import Webhook

from paygate.security.crypto import Keyring, SealedSecrets
from paygate.webhooks.outbound.models import WebhookEndpoint

PREFIX = "whsec_"
SECRET_BYTES = 24  # what Svix generates; receivers' libraries take 24 to 64
_GIVEN = re.compile(r"^whsec_[A-Za-z0-9+/]{32,88}={0,2}$")
_CURRENT = "current"
_PREVIOUS = "previous"


def generate_secret() -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def secret_problem(value: str) -> str | None:
    """Why a secret a company brings (moving from another provider) is refused; never echoes it."""
    if not _GIVEN.match(value):
        return "must be whsec_ followed by the base64 of 24 to 64 bytes"
    try:
        raw = base64.b64decode(value[len(PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        return "must be whsec_ followed by the base64 of 24 to 64 bytes"
    if not 24 <= len(raw) <= 64:
        return "must be whsec_ followed by the base64 of 24 to 64 bytes"
    return None


def mask(secret: str) -> str:
    """The known prefix and the last 4 characters."""
    return f"{PREFIX}...{secret[-4:]}"


@dataclass(frozen=True)
class SigningSecrets:
    current: str
    previous: str | None


def seal(endpoint: WebhookEndpoint, keyring: Keyring, values: SigningSecrets) -> None:
    plaintext = {_CURRENT: values.current}
    if values.previous:
        plaintext[_PREVIOUS] = values.previous
    sealed = keyring.seal(plaintext, endpoint.aad())
    endpoint.key_id = sealed.key_id
    endpoint.wrapped_data_key = sealed.wrapped_data_key
    endpoint.secret_ciphertext = sealed.ciphertext


def open_secrets(endpoint: WebhookEndpoint, keyring: Keyring) -> SigningSecrets:
    """Decrypt; raises KeyringError when the configured master keys cannot."""
    values = keyring.open(
        SealedSecrets(endpoint.key_id, endpoint.wrapped_data_key, endpoint.secret_ciphertext),
        endpoint.aad(),
    )
    return SigningSecrets(values[_CURRENT], values.get(_PREVIOUS))


def previous_valid_until(endpoint: WebhookEndpoint, now: datetime) -> datetime | None:
    """Until when the replaced secret still signs, if it still does at `now`."""
    until = endpoint.previous_secret_expires_at
    return until if until is not None and now < until else None


def signing_secrets(endpoint: WebhookEndpoint, keyring: Keyring, now: datetime) -> list[str]:
    """The secrets a delivery at `now` is signed with: the current one, then the previous
    one while its window lasts (even before the sweeper has wiped it)."""
    values = open_secrets(endpoint, keyring)
    accepted = [values.current]
    if values.previous and previous_valid_until(endpoint, now) is not None:
        accepted.append(values.previous)
    return accepted


def signature_header(
    secrets_in_use: list[str], message_id: str, timestamp: datetime, body: str
) -> str:
    """`v1,<base64>` per secret, space-separated (the Standard Webhooks header)."""
    return " ".join(Webhook(secret).sign(message_id, timestamp, body) for secret in secrets_in_use)


def hint(secret: str, changed_at: datetime, previous_until: datetime | None) -> dict[str, str]:
    values = {"masked": mask(secret), "changed_at": changed_at.isoformat()}
    if previous_until is not None:
        values["previous_valid_until"] = previous_until.isoformat()
    return values


def window_end(now: datetime, grace: timedelta) -> datetime | None:
    return now + grace if grace > timedelta(0) else None
