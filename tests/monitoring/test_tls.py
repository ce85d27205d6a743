"""A custom gateway's TLS certificate: read once a day, warned of once, 14 days ahead."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring import alerts, checks
from paygate.monitoring.tls import certificate_expiry
from paygate.security.crypto import Keyring
from paygate.security.ssrf import UnsafeURL, resolve_host
from paygate.settings import Settings
from tests.conftest import Tenant
from tests.fakes.custom_gateway import DEFAULT_API_KEY
from tests.fakes.mail import Mailbox, body_of
from tests.monitoring.helpers import add_recipient, monitor_of, monitored_gateway, schedule_only


def self_signed(directory: Path, not_after: datetime) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gateway.test")])
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(utcnow() - timedelta(days=30))
        .not_valid_after(not_after)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


@pytest.fixture
def tls_server(tmp_path: Path) -> Callable[[datetime], AbstractAsyncContextManager[str]]:
    @asynccontextmanager
    async def serve(not_after: datetime) -> AsyncIterator[str]:
        async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.close()

        folder = tmp_path / str(int(not_after.timestamp()))
        folder.mkdir()
        server = await asyncio.start_server(
            answer, "127.0.0.1", 0, ssl=self_signed(folder, not_after)
        )
        port = server.sockets[0].getsockname()[1]
        try:
            yield f"https://127.0.0.1:{port}"
        finally:
            server.close()

    return serve


async def test_a_certificate_about_to_expire_is_warned_of_once(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    settings: Settings,
    keyring: Keyring,
    mailbox: Mailbox,
    tls_server: Callable[[datetime], AbstractAsyncContextManager[str]],
) -> None:
    soon = (utcnow() + timedelta(days=5)).replace(microsecond=0)
    later = (utcnow() + timedelta(days=60)).replace(microsecond=0)
    async with tls_server(soon) as expiring, tls_server(later) as fine:
        ids = []
        for name, url in (("Expiring", expiring), ("Fine", fine)):
            payload = {
                "name": name,
                "gateway_type": "custom",
                "configuration": {"base_url": url, "api_key": DEFAULT_API_KEY},
            }
            ids.append(await monitored_gateway(client, tenant, payload, threshold=10))
        await add_recipient(client, tenant, "tls@acme.example", ["tls_expiry"])
        t0 = utcnow()
        await schedule_only(database, settings, ids, t0)
        for moment in (t0, t0 + timedelta(minutes=1), t0 + timedelta(hours=25)):
            await checks.run_round(database, keyring, settings, now=moment)
            await alerts.send_due_alerts(database, settings)

    expiring_monitor = await monitor_of(database, ids[0])
    assert expiring_monitor.tls_expires_at == soon
    assert expiring_monitor.tls_checked_at == t0 + timedelta(hours=25)
    assert (await monitor_of(database, ids[1])).tls_expires_at == later
    [mail] = mailbox.wait_for("tls@acme.example")
    assert mail["Subject"] == "paygate: the TLS certificate of Expiring expires in 4 days"
    assert expiring in body_of(mail)
    assert DEFAULT_API_KEY not in body_of(mail)
    await asyncio.sleep(0.2)
    assert len(mailbox.to("tls@acme.example")) == 1

    health = (await client.get(f"/api/v1/gateways/{ids[0]}/health", headers=tenant.headers)).json()
    assert health["tls"]["expiring_soon"] is True
    other = (await client.get(f"/api/v1/gateways/{ids[1]}/health", headers=tenant.headers)).json()
    assert other["tls"]["expiring_soon"] is False


async def test_a_guarded_gateway_reads_no_private_address() -> None:
    with pytest.raises(UnsafeURL):
        await certificate_expiry(
            "https://127.0.0.1:9/", guarded=True, resolver=resolve_host, within=1
        )
