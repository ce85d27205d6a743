"""Verifying a gateway's webhook with the secrets paygate holds for that gateway, the
notification URL paygate shows, and how headers are stored (credentials redacted)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime

from paygate.gateways.connection import adapter_config
from paygate.gateways.credentials import accepted_previous_until, open_envelope
from paygate.gateways.models import Gateway
from paygate.kit.logging import REDACTED
from paygate.security.crypto import Keyring, KeyringError
from paygate.settings import Settings
from paygate.webhooks.inbound.providers.base import (
    Provider,
    SigningSecret,
    Verdict,
    WebhookRequest,
)

MAX_HEADERS = 64
MAX_HEADER_VALUE = 2048
# Headers that carry a credential of the sender (never a provider's signature: those are
# HMACs or public-key signatures, kept so a replay can verify them again).
_CREDENTIAL_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key"}
)
_CREDENTIAL_WORDS = ("secret", "token", "password", "api-key", "apikey", "session")

UNREADABLE = (
    "the gateway's credentials cannot be decrypted with the configured master keys: "
    "re-enter them, then replay the event"
)


def webhook_url(settings: Settings, gateway_id: str) -> str:
    """Where the gateway sends its webhooks (Square signs this exact URL)."""
    return f"{settings.base_url.rstrip('/')}/webhooks/{gateway_id}"


def redact_headers(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """The request's headers as stored: lower-case names, credentials redacted, bounded."""
    kept: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        if len(kept) >= MAX_HEADERS and key not in kept:
            break
        if key in _CREDENTIAL_HEADERS or any(word in key for word in _CREDENTIAL_WORDS):
            kept[key] = REDACTED
        else:
            kept[key] = value[:MAX_HEADER_VALUE]
    return kept


def signing_secrets(
    gateway: Gateway, keyring: Keyring, field: str, now: datetime
) -> list[SigningSecret]:
    """The secrets a signature may match at `now`: the current one, and the previous one
    while its grace lasts. Raises KeyringError when they cannot be decrypted."""
    envelope = open_envelope(gateway, keyring)
    found = []
    if envelope.current.get(field):
        found.append(SigningSecret(envelope.current[field], "current"))
    previous = envelope.previous.get(field)
    if previous and accepted_previous_until(gateway, field, now) is not None:
        found.append(SigningSecret(previous, "previous"))
    return found


async def verify_request(
    provider: Provider,
    gateway: Gateway,
    request: WebhookRequest,
    keyring: Keyring,
    settings: Settings,
    *,
    check_time: bool,
) -> Verdict:
    """The provider's verdict on the request, with the gateway's secrets as of now.

    Undecryptable credentials refuse the request: a webhook is never accepted unverified.
    May raise VerificationUnavailable (PayPal's API did not answer).
    """
    try:
        # PayPal's webhook id is a public setting: no secret is found for it.
        secrets = signing_secrets(gateway, keyring, provider.secret_field, request.received_at)
        # The adapter configuration (every credential decrypted again) only for a provider
        # that asks for it: the HMAC schemes verify before the 2xx without it.
        return await provider.verify(
            request,
            secrets,
            lambda: adapter_config(gateway, keyring, settings),
            check_time=check_time,
        )
    except KeyringError:
        return Verdict.refused(UNREADABLE)


def request_of(
    gateway_id: str, body: bytes, headers: Mapping[str, str], url: str, at: datetime
) -> WebhookRequest:
    return WebhookRequest(
        gateway_id=gateway_id,
        body=body,
        headers={k.lower(): v for k, v in headers.items()},
        url=url,
        received_at=at,
    )
