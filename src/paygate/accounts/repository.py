"""Every query of the accounts tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, true, update
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.models import (
    ApiKey,
    AuthSession,
    Company,
    Invitation,
    Membership,
    PasswordReset,
    RefreshToken,
    User,
)
from paygate.kit.clock import utcnow
from paygate.kit.repository import TenantRepository


class UserRepository:
    """Users and sign-in sessions: not tenant rows (a user may belong to several companies)."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def by_email(self, email: str) -> User | None:
        return (
            await self.session.execute(select(User).where(User.email == email.lower()))
        ).scalar_one_or_none()

    async def by_id(self, user_id: str) -> User | None:
        return await self.session.get(User, user_id)

    async def company(self, company_id: str) -> Company | None:
        return await self.session.get(Company, company_id)

    async def count_failed_sign_in(
        self, user_id: str, *, threshold: int, lock_for: timedelta, now: datetime
    ) -> bool:
        """Add one failed sign-in; at `threshold` lock the account and restart the count.

        One statement, so concurrent failures count exactly. True when this one locked it.
        """
        reached = User.failed_sign_ins + 1 >= threshold
        statement = (
            update(User)
            .where(User.id == user_id)
            .values(
                failed_sign_ins=case((reached, 0), else_=User.failed_sign_ins + 1),
                locked_until=case((reached, now + lock_for), else_=User.locked_until),
            )
            .returning(User.failed_sign_ins, User.locked_until)
        )
        row = (await self.session.execute(statement)).one_or_none()
        return row is not None and row.failed_sign_ins == 0 and row.locked_until is not None

    async def memberships(self, user_id: str) -> Sequence[tuple[Membership, Company]]:
        rows = await self.session.execute(
            select(Membership, Company)
            .join(Company, Company.id == Membership.company_id)
            .where(Membership.user_id == user_id)
            .order_by(Membership.created_at)
        )
        return [(m, c) for m, c in rows.tuples()]

    async def refresh_token(self, token_hash: str) -> tuple[RefreshToken, AuthSession] | None:
        statement = (
            select(RefreshToken, AuthSession)
            .join(AuthSession, AuthSession.id == RefreshToken.session_id)
            .where(RefreshToken.token_hash == token_hash)
            # Only the token row: a reuse revokes the session from another transaction.
            .with_for_update(of=RefreshToken)
        )
        return (await self.session.execute(statement)).tuples().one_or_none()

    async def revoke_sessions(
        self,
        *,
        reason: str,
        session_id: str | None = None,
        user_id: str | None = None,
        company_id: str | None = None,
        except_session_id: str | None = None,
    ) -> list[str]:
        """Mark the matching live sessions ended; their ids (for the revocation list).

        Use AccountService, which also puts the ids on the revocation list: a session only
        marked here keeps its access tokens working until they expire.
        """
        statement = update(AuthSession).where(AuthSession.revoked_at.is_(None))
        if session_id is not None:
            statement = statement.where(AuthSession.id == session_id)
        if user_id is not None:
            statement = statement.where(AuthSession.user_id == user_id)
        if company_id is not None:
            statement = statement.where(AuthSession.company_id == company_id)
        if except_session_id is not None:
            statement = statement.where(AuthSession.id != except_session_id)
        result = await self.session.execute(
            statement.values(revoked_at=utcnow(), revoked_reason=reason).returning(AuthSession.id)
        )
        return list(result.scalars())

    async def live_sessions(self, user_id: str, company_id: str) -> Sequence[AuthSession]:
        """The user's sign-in sessions in one company that can still be used, newest first."""
        rows = await self.session.execute(
            select(AuthSession)
            .where(
                AuthSession.user_id == user_id,
                AuthSession.company_id == company_id,
                AuthSession.revoked_at.is_(None),
                AuthSession.expires_at > utcnow(),
            )
            .order_by(AuthSession.created_at.desc(), AuthSession.id.desc())
        )
        return list(rows.scalars())

    async def owners_of(
        self, company_ids: Sequence[str], *, except_user_id: str | None = None
    ) -> dict[str, list[str]]:
        """The owners' emails of these companies, each with the names of its companies."""
        if not company_ids:
            return {}
        rows = await self.session.execute(
            select(User.email, Company.name)
            .join(Membership, Membership.user_id == User.id)
            .join(Company, Company.id == Membership.company_id)
            .where(Membership.company_id.in_(company_ids), Membership.role == "owner")
            .where(User.id != except_user_id if except_user_id else true())
            .order_by(User.email, Company.name)
        )
        owners: dict[str, list[str]] = {}
        for email, company_name in rows.tuples():
            owners.setdefault(email, []).append(company_name)
        return owners

    async def open_password_reset(self, digest: str, now: datetime) -> PasswordReset | None:
        """An unused, unexpired, unrevoked reset by its token digest, locked for the change."""
        return (
            await self.session.execute(
                select(PasswordReset)
                .where(
                    PasswordReset.token_digest == digest,
                    PasswordReset.used_at.is_(None),
                    PasswordReset.revoked_at.is_(None),
                    PasswordReset.expires_at > now,
                )
                .with_for_update()
            )
        ).scalar_one_or_none()

    async def revoke_password_resets(self, user_id: str, now: datetime) -> None:
        """Void every reset link of the user still waiting to be used."""
        await self.session.execute(
            update(PasswordReset)
            .where(
                PasswordReset.user_id == user_id,
                PasswordReset.used_at.is_(None),
                PasswordReset.revoked_at.is_(None),
            )
            .values(revoked_at=now)
        )


class MembershipRepository(TenantRepository[Membership]):
    model = Membership
    what = "member"

    async def with_users(self) -> Sequence[tuple[Membership, User]]:
        rows = await self.session.execute(
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.company_id == self.company_id)
            .order_by(Membership.created_at)
        )
        return list(rows.tuples())

    async def of_user(self, user_id: str) -> Membership | None:
        return (
            await self.session.execute(self.scoped().where(Membership.user_id == user_id))
        ).scalar_one_or_none()

    async def count_owners(self) -> int:
        return int(
            (
                await self.session.execute(
                    select(func.count())
                    .select_from(Membership)
                    .where(Membership.company_id == self.company_id, Membership.role == "owner")
                )
            ).scalar_one()
        )

    async def lock_company(self) -> None:
        """Serialize member changes of one company (the last-owner rule needs it)."""
        await self.session.execute(
            select(Company.id).where(Company.id == self.company_id).with_for_update()
        )


class InvitationRepository(TenantRepository[Invitation]):
    model = Invitation
    what = "invitation"

    async def pending(self) -> Sequence[Invitation]:
        now = utcnow()
        statement = self.scoped().where(
            Invitation.accepted_at.is_(None),
            Invitation.revoked_at.is_(None),
            Invitation.expires_at > now,
        )
        return (
            (await self.session.execute(statement.order_by(Invitation.created_at))).scalars().all()
        )

    async def pending_for(self, email: str) -> Sequence[Invitation]:
        return [i for i in await self.pending() if i.email == email]


async def invitation_by_token(
    session: AsyncSession, token_hash: str, now: datetime
) -> Invitation | None:
    """An open invitation by its secret, whichever company sent it (the token is the proof)."""
    return (
        await session.execute(
            select(Invitation)
            .where(
                Invitation.token_hash == token_hash,
                Invitation.accepted_at.is_(None),
                Invitation.revoked_at.is_(None),
                Invitation.expires_at > now,
            )
            .with_for_update()
        )
    ).scalar_one_or_none()


class ApiKeyRepository(TenantRepository[ApiKey]):
    model = ApiKey
    what = "API key"

    async def active(self) -> Sequence[ApiKey]:
        statement = (
            self.scoped().where(ApiKey.revoked_at.is_(None)).order_by(ApiKey.created_at.desc())
        )
        return (await self.session.execute(statement)).scalars().all()
