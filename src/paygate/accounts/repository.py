"""Every query of the accounts tables."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

from sqlalchemy import case, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.models import (
    ApiKey,
    AuthSession,
    Company,
    Invitation,
    Membership,
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
    ) -> None:
        statement = update(AuthSession).where(AuthSession.revoked_at.is_(None))
        if session_id is not None:
            statement = statement.where(AuthSession.id == session_id)
        if user_id is not None:
            statement = statement.where(AuthSession.user_id == user_id)
        if company_id is not None:
            statement = statement.where(AuthSession.company_id == company_id)
        await self.session.execute(statement.values(revoked_at=utcnow(), revoked_reason=reason))


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
