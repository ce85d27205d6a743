"""Background jobs of the accounts domain."""

from __future__ import annotations

from datetime import timedelta

import procrastinate
import structlog
from sqlalchemy import delete

from paygate.accounts.models import AuthSession, Invitation, RefreshToken
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import job_database

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()

# Ended sessions are kept a while so "signed out" and "revoked" stay visible, then purged.
KEEP_ENDED_SESSIONS = timedelta(days=30)


@blueprint.periodic(cron="17 3 * * *")
@blueprint.task(name="purge_expired_sessions", queue="maintenance")
async def purge_expired_sessions(timestamp: int) -> None:
    """Delete sign-in sessions (with their refresh tokens) and invitations long past use."""
    cutoff = utcnow() - KEEP_ENDED_SESSIONS
    async with job_database().transaction() as session:
        stale = AuthSession.expires_at < cutoff
        stale_ids = AuthSession.__table__.select().with_only_columns(AuthSession.id).where(stale)
        await session.execute(delete(RefreshToken).where(RefreshToken.session_id.in_(stale_ids)))
        sessions = await session.execute(delete(AuthSession).where(stale))
        invitations = await session.execute(
            delete(Invitation).where(Invitation.expires_at < cutoff)
        )
    logger.info(
        "purged_expired_sessions",
        sessions=getattr(sessions, "rowcount", 0),
        invitations=getattr(invitations, "rowcount", 0),
    )
