"""A company's members: invitations (sent, revoked, accepted), roles, lockouts lifted,
removal, and an owner ending a member's sessions."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

from paygate.accounts.auth import AuthContext
from paygate.accounts.models import AuthSession, Invitation, Membership, User
from paygate.accounts.permissions import Role
from paygate.accounts.repository import (
    InvitationRepository,
    MembershipRepository,
    invitation_by_token,
)
from paygate.accounts.schemas import InviteRequest
from paygate.accounts.service import (
    ACCOUNT_LOCKED,
    SIGN_IN_FAILED,
    AccountService,
    SignedIn,
    check_new_password,
)
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.errors import conflict, not_found
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.audit import Actor
from paygate.security.passwords import hash_password, verify_password
from paygate.security.tokens import new_opaque_token, token_digest

INVITATION_TTL = timedelta(days=7)


class MemberService:
    """Changes to a company's members; the messages to send wait on `accounts.outbox`."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.session = accounts.session
        self.settings = accounts.settings
        self.origin = accounts.origin
        self.users = accounts.users

    async def invite(self, auth: AuthContext, request: InviteRequest) -> tuple[Invitation, str]:
        email = request.email.lower()
        members = MembershipRepository(self.session, auth.company_id)
        existing = await self.users.by_email(email)
        if existing is not None and await members.of_user(existing.id) is not None:
            raise conflict("This person is already a member.")
        invitations = InvitationRepository(self.session, auth.company_id)
        for earlier in await invitations.pending_for(email):
            earlier.revoked_at = utcnow()
        token = new_opaque_token("pgi")
        invitation = await invitations.add(
            Invitation(
                id=new_id("ivt"),
                company_id=auth.company_id,
                email=email,
                role=request.role.value,
                token_hash=token_digest(token),
                invited_by=auth.user_id,
                expires_at=utcnow() + INVITATION_TTL,
            )
        )
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.invited",
            object_type="invitation",
            object_id=invitation.id,
            object_name=email,
            changes={
                "email": {"before": None, "after": email},
                "role": {"before": None, "after": request.role.value},
            },
        )
        return invitation, f"{self.settings.base_url}/invite/{token}"

    async def revoke_invitation(self, auth: AuthContext, invitation_id: str) -> None:
        invitation = await InvitationRepository(self.session, auth.company_id).get(
            invitation_id, for_update=True
        )
        if invitation.accepted_at is None and invitation.revoked_at is None:
            invitation.revoked_at = utcnow()
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.invitation_revoked",
            object_type="invitation",
            object_id=invitation.id,
            object_name=invitation.email,
        )

    async def accept_invitation(self, token: str, password: str, database: Database) -> SignedIn:
        now = utcnow()
        invitation = await invitation_by_token(self.session, token_digest(token), now)
        if invitation is None:
            raise not_found("invitation (it may have expired or been used)")
        user = await self.users.by_email(invitation.email)
        if user is None:
            check_new_password(password, email=invitation.email)
            user = User(
                id=new_id("usr"), email=invitation.email, password_hash=hash_password(password)
            )
            self.session.add(user)
            await self.session.flush()
        else:
            # An existing account's password is checked as at sign-in, lockout and audit
            # included: whoever sent the invitation holds its token and could otherwise
            # guess the invitee's password without limit.
            if user.locked_until is not None and user.locked_until > now:
                await self.accounts.refuse_sign_in(
                    database,
                    user,
                    user.email,
                    "auth.sign_in",
                    "denied",
                    "account locked (accepting an invitation)",
                    count=False,
                )
                raise ACCOUNT_LOCKED
            if not verify_password(user.password_hash, password):
                if await self.accounts.refuse_sign_in(
                    database,
                    user,
                    user.email,
                    "auth.sign_in",
                    "failure",
                    "wrong password (accepting an invitation)",
                ):
                    raise ACCOUNT_LOCKED
                raise SIGN_IN_FAILED
            user.failed_sign_ins = 0
        members = MembershipRepository(self.session, invitation.company_id)
        if await members.of_user(user.id) is None:
            await members.add(
                Membership(
                    id=new_id("mem"),
                    company_id=invitation.company_id,
                    user_id=user.id,
                    role=invitation.role,
                )
            )
        invitation.accepted_at = utcnow()
        await audit.record(
            self.session,
            company_id=invitation.company_id,
            actor=Actor("user", user.id, user.email),
            origin=self.origin,
            action="member.joined",
            object_type="user",
            object_id=user.id,
            object_name=user.email,
            changes={"role": {"before": None, "after": invitation.role}},
        )
        return await self.accounts.start_session(user, invitation.company_id)

    async def change_role(self, auth: AuthContext, membership_id: str, role: Role) -> Membership:
        members = MembershipRepository(self.session, auth.company_id)
        await members.lock_company()
        membership = await members.get(membership_id, for_update=True)
        before = membership.role
        if (
            before == Role.OWNER.value
            and role is not Role.OWNER
            and await members.count_owners() <= 1
        ):
            raise conflict("A company keeps at least one owner. Make someone else owner first.")
        membership.role = role.value
        ended = 0
        if before != role.value:
            # A new role starts from a new sign-in: nothing issued under the old one lives on.
            # Changing your own role keeps the session you are using.
            ended = await self._end_member_sessions(auth, membership, "role_changed")
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.role_changed",
            object_type="member",
            object_id=membership.id,
            object_name=await self._email_of(membership),
            changes={"role": {"before": before, "after": role.value}}
            if before != role.value
            else None,
            detail=f"{ended} session(s) ended" if ended else None,
        )
        return membership

    async def unlock_member(self, auth: AuthContext, membership_id: str) -> Membership:
        """End a member's sign-in lockout now (and restart their failed-attempt count)."""
        membership = await MembershipRepository(self.session, auth.company_id).get(
            membership_id, for_update=True
        )
        user = await self.users.by_id(membership.user_id)
        assert user is not None
        before = user.locked_until
        still_locked = before is not None and before > utcnow()
        user.locked_until = None
        user.failed_sign_ins = 0
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.unlocked",
            object_type="member",
            object_id=membership.id,
            object_name=await self._email_of(membership),
            changes={"locked_until": {"before": before.isoformat(), "after": None}}
            if still_locked and before is not None
            else None,
        )
        return membership

    async def remove_member(self, auth: AuthContext, membership_id: str) -> None:
        members = MembershipRepository(self.session, auth.company_id)
        await members.lock_company()
        membership = await members.get(membership_id, for_update=True)
        if membership.role == Role.OWNER.value and await members.count_owners() <= 1:
            raise conflict("A company keeps at least one owner. Make someone else owner first.")
        await self.session.delete(membership)
        # Their sessions in this company end at once.
        ended = await self.accounts.end_all_sessions(
            membership.user_id, "member_removed", company_id=auth.company_id
        )
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.removed",
            object_type="member",
            object_id=membership.id,
            object_name=await self._email_of(membership),
            changes={"role": {"before": membership.role, "after": None}},
            detail=f"{ended} session(s) ended",
        )

    async def member_sessions(
        self, auth: AuthContext, membership_id: str
    ) -> tuple[Membership, Sequence[AuthSession]]:
        """A member's live sessions in this company (owners: the route needs members:write)."""
        membership = await MembershipRepository(self.session, auth.company_id).get(membership_id)
        return membership, await self.users.live_sessions(membership.user_id, auth.company_id)

    async def _email_of(self, membership: Membership) -> str | None:
        """A member's email, kept in the audit entry as the object's name."""
        user = await self.users.by_id(membership.user_id)
        return user.email if user else None

    async def _end_member_sessions(
        self, auth: AuthContext, membership: Membership, reason: str
    ) -> int:
        """End a member's sessions in this company; one acting on itself keeps the session
        it is using."""
        own = membership.user_id == auth.user_id
        return await self.accounts.end_all_sessions(
            membership.user_id,
            reason,
            company_id=auth.company_id,
            except_session_id=auth.session_id if own else None,
        )

    async def end_member_sessions(self, auth: AuthContext, membership_id: str) -> int:
        """End every session of a member in this company (a lost laptop, a departure)."""
        membership = await MembershipRepository(self.session, auth.company_id).get(
            membership_id, for_update=True
        )
        ended = await self._end_member_sessions(auth, membership, "ended_by_owner")
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="member.sessions_ended",
            object_type="member",
            object_id=membership.id,
            object_name=await self._email_of(membership),
            detail=f"{ended} session(s) ended",
        )
        return ended
