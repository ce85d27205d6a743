"""Owners hear once, ahead of time, that an API key is about to expire."""

from __future__ import annotations

from typing import Any

import httpx
from sqlalchemy import select

from paygate.accounts.models import ApiKey
from paygate.accounts.tasks import notify_expiring_api_keys
from paygate.db import Database
from paygate.kit.jobs_context import JobContext, set_job_context
from tests.conftest import Tenant
from tests.fakes.mail import Mailbox, body_of


async def create_key(
    client: httpx.AsyncClient, tenant: Tenant, name: str, days: int | None
) -> dict[str, Any]:
    payload: dict[str, Any] = {"name": name, "scopes": ["gateways:read"]}
    if days is not None:
        payload["expires_in_days"] = days
    created = await client.post("/api/v1/api-keys", json=payload, headers=tenant.headers)
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


async def add_owner(client: httpx.AsyncClient, tenant: Tenant, email: str) -> None:
    invitation = (
        await client.post(
            "/api/v1/members", json={"email": email, "role": "owner"}, headers=tenant.headers
        )
    ).json()
    accepted = await client.post(
        "/api/v1/invitations/accept",
        json={"token": invitation["invite_url"].rsplit("/", 1)[1], "password": tenant.password},
    )
    assert accepted.status_code == 200, accepted.text


async def test_owners_are_emailed_once_about_keys_that_expire_soon(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    jobs: JobContext,
    mailbox: Mailbox,
) -> None:
    await add_owner(client, tenant, "co-owner@acme-invoicing.com")
    await client.post(
        "/api/v1/members",
        json={"email": "dev@acme-invoicing.com", "role": "developer"},
        headers=tenant.headers,
    )
    soon = await create_key(client, tenant, "Billing server", 3)
    later = await create_key(client, tenant, "Reporting", 30)
    never = await create_key(client, tenant, "Forever", None)
    revoked = await create_key(client, tenant, "Retired", 2)
    await client.delete(f"/api/v1/api-keys/{revoked['id']}", headers=tenant.headers)
    # Rotated: the old key stops within a day (the grace period its owner chose, no notice
    # needed); its 30-day replacement is not due yet.
    rotated = await create_key(client, tenant, "Rotated", 30)
    await client.post(f"/api/v1/api-keys/{rotated['id']}/rotate", headers=tenant.headers)
    theirs = await create_key(client, other_tenant, "Globex shop", 6)

    await notify_expiring_api_keys(timestamp=0)

    [ours] = mailbox.wait_for(tenant.email)
    assert mailbox.to("co-owner@acme-invoicing.com") == [ours]
    assert mailbox.to("dev@acme-invoicing.com") == []  # owners only
    text = body_of(ours)
    assert "Billing server" in ours["Subject"]
    assert soon["prefix"] in text
    assert soon["expires_at"][:10] in text
    assert "/api-keys" in text
    assert soon["key"] not in str(ours)
    for other in (later, never, revoked, rotated):
        assert other["name"] not in str(ours)
    # The other company's owner hears about their key, and only theirs.
    [their_mail] = mailbox.wait_for(other_tenant.email)
    assert "Globex shop" in their_mail["Subject"]
    assert "Billing server" not in str(their_mail)
    assert theirs["key"] not in str(their_mail)

    # A second run (a retry, another worker) sends nothing more.
    await notify_expiring_api_keys(timestamp=1)
    assert len(mailbox.to(tenant.email)) == 1
    assert len(mailbox.to(other_tenant.email)) == 1

    async with database.transaction() as session:
        noticed = set(
            (
                await session.execute(
                    select(ApiKey.id).where(ApiKey.expiry_notice_sent_at.is_not(None))
                )
            ).scalars()
        )
    assert {soon["id"], theirs["id"]} <= noticed
    assert not {later["id"], never["id"], revoked["id"], rotated["id"]} & noticed
    log = (
        await client.get(
            "/api/v1/audit-log",
            params={"action": "api_key.expiry_notice_sent"},
            headers=tenant.headers,
        )
    ).json()["data"]
    assert [entry["object_id"] for entry in log] == [soon["id"]]
    assert log[0]["actor_type"] == "system"


async def test_the_notice_window_is_a_setting(
    client: httpx.AsyncClient,
    tenant: Tenant,
    database: Database,
    jobs: JobContext,
    mailbox: Mailbox,
) -> None:
    key = await create_key(client, tenant, "Month key", 20)
    await notify_expiring_api_keys(timestamp=0)
    assert mailbox.to(tenant.email) == []

    wide = JobContext(
        database, jobs.settings.model_copy(update={"api_key_expiry_notice_days": 21}), jobs.keyring
    )
    set_job_context(wide)
    try:
        await notify_expiring_api_keys(timestamp=0)
    finally:
        set_job_context(jobs)
    [mail] = mailbox.wait_for(tenant.email)
    assert key["prefix"] in body_of(mail)
