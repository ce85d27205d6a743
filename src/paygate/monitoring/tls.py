"""The TLS certificate of a custom gateway: read once a day, warned of ahead of expiry."""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlsplit

from cryptography import x509
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.adapters.base import GatewayType
from paygate.gateways.connection import adapter_config
from paygate.gateways.models import Gateway
from paygate.monitoring import alerts
from paygate.monitoring.models import GatewayMonitor
from paygate.monitoring.status import AlertKind
from paygate.security.crypto import Keyring, KeyringError
from paygate.security.ssrf import Resolver, UnsafeURL, checked_addresses
from paygate.settings import Settings

# Expiry moves slowly: one reading a day is plenty.
READ_EVERY = timedelta(hours=24)


@dataclass(frozen=True)
class TlsReading:
    expires_at: datetime | None
    error: str | None


def https_base_url(gateway: Gateway) -> str | None:
    """The https base URL of a custom gateway; None for any other gateway."""
    if gateway.gateway_type != GatewayType.CUSTOM.value:
        return None
    url = gateway.public_config.get("base_url", "")
    return url if url.startswith("https://") else None


async def read_if_due(
    gateway: Gateway,
    last_read: datetime | None,
    keyring: Keyring,
    settings: Settings,
    resolver: Resolver,
    now: datetime,
) -> TlsReading | None:
    """Read the certificate's expiry when a day has passed since the last reading."""
    url = https_base_url(gateway)
    if url is None or (last_read is not None and now - last_read < READ_EVERY):
        return None
    try:
        guarded = adapter_config(gateway, keyring, settings, resolver).guarded
    except KeyringError:
        guarded = True  # secrets unreadable: be as careful as with a live gateway
    try:
        expires = await certificate_expiry(
            url, guarded=guarded, resolver=resolver, within=settings.gateway_timeout_seconds
        )
    except UnsafeURL as exc:
        return TlsReading(None, f"The certificate was not read: the address {exc.reason}.")
    except (OSError, TimeoutError, ValueError) as exc:
        return TlsReading(None, f"The certificate could not be read ({type(exc).__name__}).")
    return TlsReading(expires, None)


async def certificate_expiry(
    url: str, *, guarded: bool, resolver: Resolver, within: float
) -> datetime:
    """When the certificate served at `url` expires.

    Only the date is read, so the handshake does not verify the chain (a certificate that
    is already invalid still has a date worth warning about) and nothing is sent after it.
    A guarded gateway's host is checked and pinned as for its calls (security/ssrf.py).
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    address = str((await checked_addresses(host, resolver))[0]) if guarded else host
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    async with asyncio.timeout(within):
        _, writer = await asyncio.open_connection(
            address, parts.port or 443, ssl=context, server_hostname=host
        )
    try:
        der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    if not der:
        raise ValueError("the server sent no certificate")
    return x509.load_der_x509_certificate(der).not_valid_after_utc.astimezone(UTC)


async def record(
    session: AsyncSession,
    monitor: GatewayMonitor,
    gateway: Gateway,
    reading: TlsReading,
    now: datetime,
    settings: Settings,
) -> None:
    """Keep the reading; warn once per certificate when it expires within the warning days."""
    monitor.tls_checked_at = now
    monitor.tls_error = reading.error
    if reading.expires_at is None:
        return
    monitor.tls_expires_at = reading.expires_at
    if reading.expires_at - now > timedelta(days=settings.monitoring_tls_warning_days):
        return
    await alerts.raise_alert(
        session,
        kind=AlertKind.TLS_EXPIRY,
        gateway=gateway,
        incident=None,
        # One warning per certificate: a renewed one (another expiry) may warn again.
        dedup_key=f"{gateway.id}:tls:{reading.expires_at:%Y%m%dT%H%M%S}",
        mail=alerts.tls_mail(gateway, reading.expires_at, now, settings),
        now=now,
    )
