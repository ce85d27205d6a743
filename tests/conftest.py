"""Shared test setup: a fresh, migrated PostgreSQL database per run, the app, and tenants.

`PAYGATE_TEST_DATABASE_URL` names a server to create the test database on (CI uses the
machine's PostgreSQL); without it the tests start the embedded PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from alembic import command
from sqlalchemy import text

from paygate.app import create_app
from paygate.db import Database, libpq_url, start_embedded_postgres
from paygate.kit.jobs_context import JobContext, set_job_context
from paygate.migrations_check import alembic_config
from paygate.security.crypto import Keyring, generate_master_key
from paygate.settings import Mode, Settings
from tests.fakes.mail import Mailbox

pytest_plugins = ["tests.fakes.fixtures"]

STRONG_PASSWORD = "Velvet-Harbor-Lantern-42"


def _admin_url() -> str:
    configured = os.environ.get("PAYGATE_TEST_DATABASE_URL")
    if configured:
        return libpq_url(configured)
    data_dir = Path(tempfile.gettempdir()) / "paygate-test-embedded"
    return libpq_url(start_embedded_postgres(data_dir))


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A new database for this run, migrated to head, dropped at the end."""
    admin_url = _admin_url()
    name = f"paygate_test_{secrets.token_hex(4)}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, query = admin_url.partition("?")
    url = base.rsplit("/", 1)[0] + f"/{name}" + (f"?{query}" if query else "")
    command.upgrade(alembic_config(url), "head")
    yield url
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def master_keys() -> str:
    return generate_master_key("test-a")


@pytest.fixture(scope="session")
def settings(
    database_url: str,
    master_keys: str,
    tmp_path_factory: pytest.TempPathFactory,
    _mail_server: Mailbox,
) -> Settings:
    return Settings(
        mode=Mode.TEST,
        database_url=database_url,
        master_keys=master_keys,  # type: ignore[arg-type]
        jwt_secret="test-jwt-secret-" + secrets.token_hex(16),  # type: ignore[arg-type]
        run_worker=False,
        data_dir=tmp_path_factory.mktemp("var"),
        gateway_timeout_seconds=2.0,
        max_body_bytes=64 * 1024,
        smtp_host=_mail_server.host,
        smtp_port=_mail_server.port,
    ).model_copy(update=GENEROUS_RATE_LIMITS)


# Every test shares a few client IPs and signs up and in often: limits it never reaches.
# tests/security/test_rate_limits.py builds apps with tight ones.
GENEROUS_RATE_LIMITS = {
    name: "100000/minute"
    for name in Settings.model_fields
    if name.startswith("rate_limit_") and name != "rate_limit_key_prefix"
}


@pytest.fixture(scope="session")
async def database(database_url: str) -> AsyncIterator[Database]:
    db = Database(database_url)
    yield db
    await db.dispose()


@pytest.fixture
def jobs(database: Database, settings: Settings) -> JobContext:
    """Jobs run in this process against the test database."""
    context = JobContext(database, settings, Keyring.parse(settings.master_keys_text()))
    set_job_context(context)
    return context


@pytest.fixture(scope="session")
def app(settings: Settings, database: Database) -> Any:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://paygate.test") as c:
        yield c


@dataclass
class Tenant:
    """A company with its owner signed in; `headers` authorizes as that owner."""

    email: str
    password: str
    company_name: str
    access_token: str
    refresh_token: str
    company_id: str = ""
    user_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.access_token}"}


async def register(client: httpx.AsyncClient, company_name: str | None = None) -> Tenant:
    suffix = secrets.token_hex(4)
    company_name = company_name or f"Company {suffix}"
    email = f"owner-{suffix}@example.com"
    response = await client.post(
        "/api/v1/auth/register",
        json={"email": email, "password": STRONG_PASSWORD, "company_name": company_name},
    )
    assert response.status_code == 201, response.text
    tokens = response.json()
    tenant = Tenant(
        email, STRONG_PASSWORD, company_name, tokens["access_token"], tokens["refresh_token"]
    )
    me = (await client.get("/api/v1/me", headers=tenant.headers)).json()
    tenant.company_id = me["company"]["id"]
    tenant.user_id = me["user"]["id"]
    return tenant


@pytest.fixture
async def tenant(client: httpx.AsyncClient) -> Tenant:
    return await register(client, "Acme Invoicing")


@pytest.fixture
async def other_tenant(client: httpx.AsyncClient) -> Tenant:
    """The second company every scenario keeps in the database."""
    return await register(client, "Globex Billing")


async def age_spent_refresh_tokens(database: Database) -> None:
    """Move every spent refresh token past the reuse grace period, as time would."""
    async with database.transaction() as session:
        await session.execute(
            text(
                "UPDATE refresh_tokens SET used_at = used_at - interval '1 minute'"
                " WHERE used_at IS NOT NULL"
            )
        )
