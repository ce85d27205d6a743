"""The nightly purge removes sign-in sessions and invitations long past use, nothing else."""

from __future__ import annotations

import httpx
from sqlalchemy import select, text

from paygate.accounts.models import AuthSession, RefreshToken
from paygate.accounts.tasks import purge_expired_sessions
from paygate.db import Database
from paygate.kit.jobs_context import JobContext
from tests.conftest import Tenant


async def test_purge_keeps_live_sessions_and_removes_long_expired_ones(
    client: httpx.AsyncClient,
    tenant: Tenant,
    other_tenant: Tenant,
    database: Database,
    jobs: JobContext,
) -> None:
    async with database.transaction() as session:
        old = (
            await session.execute(select(AuthSession).where(AuthSession.user_id == tenant.user_id))
        ).scalar_one()
        await session.execute(
            text("UPDATE auth_sessions SET expires_at = now() - interval '31 days' WHERE id = :id"),
            {"id": old.id},
        )
    await purge_expired_sessions(timestamp=0)

    async with database.transaction() as session:
        assert await session.get(AuthSession, old.id) is None
        tokens = select(RefreshToken).where(RefreshToken.session_id == old.id)
        assert (await session.execute(tokens)).first() is None
    # The other company's owner is still signed in.
    assert (await client.get("/api/v1/me", headers=other_tenant.headers)).status_code == 200
    # The purged session is gone for good: its refresh token no longer works.
    refresh = await client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tenant.refresh_token}
    )
    assert refresh.status_code == 401
