"""Background jobs of the accounts domain."""

from __future__ import annotations

from datetime import datetime, timedelta

import procrastinate
import structlog
from sqlalchemy import ColumnElement, and_, delete, select

from paygate.accounts.models import (
    ApiKey,
    AuthSession,
    Company,
    Invitation,
    RefreshToken,
)
from paygate.accounts.repository import UserRepository
from paygate.kit.clock import utcnow
from paygate.kit.jobs_context import job_context, job_database
from paygate.kit.mail import Email, Mailer, MailError
from paygate.security import audit
from paygate.security.revocation import purge_expired

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


def _expiring_soon(now: datetime, horizon: datetime) -> ColumnElement[bool]:
    """Keys still in use that expire before `horizon` and whose owners were not yet told.

    A rotated key is left out: its short expiry is the grace period its owner chose.
    """
    return and_(
        ApiKey.expires_at > now,
        ApiKey.expires_at <= horizon,
        ApiKey.expiry_notice_sent_at.is_(None),
        ApiKey.revoked_at.is_(None),
        ApiKey.replaced_by.is_(None),
    )


def expiry_notice(key: ApiKey, company: Company, owners: list[str], rotate_url: str) -> Email:
    # Name and prefix identify the key; the key itself is never stored, so never mailed.
    expires = key.expires_at.strftime("%Y-%m-%d %H:%M UTC") if key.expires_at else "soon"
    return Email(
        to=tuple(owners),
        subject=f"paygate: API key {key.name} expires on {expires[:10]}",
        text=(
            f'The API key "{key.name}" ({key.prefix}...) of {company.name} expires on '
            f"{expires}.\n\n"
            "After that, every call made with it is refused. Rotate it before then: rotating "
            "issues a replacement with the same scopes and keeps the old key working for a "
            "grace period while you deploy the new one.\n\n"
            f"Rotate it here: {rotate_url}\n\n"
            "You receive this because you are an owner of the company in paygate.\n"
        ),
    )


@blueprint.periodic(cron="7 8 * * *")
@blueprint.task(name="notify_expiring_api_keys", queue="maintenance")
async def notify_expiring_api_keys(timestamp: int) -> None:
    """Email a company's owners once about each API key that expires within the notice window.

    Each key is marked in the transaction that holds its row lock while the mail is handed
    over, so a second run (or a concurrent worker) sends nothing more; a mail failure rolls
    the mark back and the next run tries again.
    """
    context = job_context()
    settings = context.settings
    now = utcnow()
    due = _expiring_soon(now, now + timedelta(days=settings.api_key_expiry_notice_days))
    async with context.database.transaction() as session:
        key_ids = list((await session.execute(select(ApiKey.id).where(due))).scalars())
    mailer = Mailer(settings)
    sent = 0
    for key_id in key_ids:
        try:
            async with context.database.transaction() as session:
                key = (
                    await session.execute(
                        select(ApiKey)
                        .where(ApiKey.id == key_id, due)
                        .with_for_update(skip_locked=True)
                    )
                ).scalar_one_or_none()
                if key is None:  # taken by another run, or rotated or revoked meanwhile
                    continue
                company = await session.get(Company, key.company_id)
                assert company is not None
                owners = list(await UserRepository(session).owners_of([key.company_id]))
                key.expiry_notice_sent_at = now
                await audit.record(
                    session,
                    company_id=key.company_id,
                    actor=audit.SYSTEM,
                    origin=None,
                    action="api_key.expiry_notice_sent",
                    object_type="api_key",
                    object_id=key.id,
                    object_name=key.name,
                    detail=f"{len(owners)} owner(s) told it expires {key.expires_at}",
                )
                await mailer.send(
                    expiry_notice(key, company, owners, f"{settings.base_url}/api-keys")
                )
                sent += 1
        except MailError:
            logger.warning("api_key_expiry_notice_not_sent", api_key_id=key_id)
    logger.info("api_key_expiry_notices", due=len(key_ids), sent=sent)


@blueprint.periodic(cron="*/10 * * * *")
@blueprint.task(name="purge_revoked_tokens", queue="maintenance")
async def purge_revoked_tokens(timestamp: int) -> None:
    """Delete revocation list entries past their last covered token's expiry (Redis expires
    its own copies); idempotent, so a missed or doubled tick does no harm."""
    async with job_database().transaction() as session:
        purged = await purge_expired(session)
    # Every ten minutes: a line only when there was something to purge (debug otherwise).
    (logger.info if purged else logger.debug)("purged_revoked_tokens", entries=purged)
