"""Sign-up, sign-in, token rotation, members and API keys."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import API_KEY_PREFIX, AuthContext
from paygate.accounts.models import (
    ApiKey,
    AuthSession,
    Company,
    Invitation,
    Membership,
    RefreshToken,
    User,
)
from paygate.accounts.notices import (
    LockedAccount,
    Outbox,
    account_locked_email,
    member_locked_email,
)
from paygate.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from paygate.accounts.repository import (
    ApiKeyRepository,
    InvitationRepository,
    MembershipRepository,
    UserRepository,
    invitation_by_token,
)
from paygate.accounts.schemas import (
    MAX_API_KEY_LIFETIME_DAYS,
    MAX_ROTATION_GRACE_HOURS,
    ApiKeyCreate,
    InviteRequest,
    RegisterRequest,
    TokenPair,
)
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.deps import Origin
from paygate.kit.errors import (
    FieldError,
    Problem,
    conflict,
    forbidden,
    not_found,
    validation_failed,
)
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.audit import Actor
from paygate.security.passwords import (
    hash_password,
    needs_rehash,
    password_problems,
    verify_password,
)
from paygate.security.revocation import RevocationList, RevocationUnavailable
from paygate.security.tokens import issue_access_token, new_opaque_token, token_digest
from paygate.settings import Settings

INVITATION_TTL = timedelta(days=7)
SIGN_IN_FAILED = Problem(
    401, "invalid-credentials", "Sign-in failed", "The email or password is wrong."
)
# 401 like a wrong password (the caller is not signed in), with its own type and words so
# the person can tell waiting (or an owner) is the way out.
ACCOUNT_LOCKED = Problem(
    401,
    "account-locked",
    "Sign-in failed",
    "This account is locked after too many failed sign-ins. Try again later, "
    "or ask an owner of your company to unlock it.",
)

_NOT_A_SESSION = Problem(
    400, "not-a-session", "Not a session", "API keys are revoked, not signed out."
)


@dataclass(frozen=True)
class SignedIn:
    tokens: TokenPair
    user: User
    company_id: str


def check_new_password(
    password: str,
    *,
    email: str,
    company_name: str | None = None,
    company_names: tuple[str, ...] = (),
    field: str = "password",
) -> None:
    """The one strength check for every new password (sign-up, change, reset, invitation)."""
    context = (email, *(name for name in [company_name, *company_names] if name))
    problems = password_problems(password, context=context)
    if problems:
        raise validation_failed([FieldError(field, " ".join(problems), "weak_password")])


class AccountService:
    def __init__(
        self,
        session: AsyncSession,
        settings: Settings,
        origin: Origin,
        *,
        revocations: RevocationList,
    ) -> None:
        self.session = session
        self.settings = settings
        self.origin = origin
        # Ending a session must reach every process: app.state.revocations (RevocationsDep).
        self.revocations = revocations
        self.users = UserRepository(session)
        self.outbox = Outbox()

    # --- signing in ------------------------------------------------------------

    async def register(self, request: RegisterRequest) -> SignedIn:
        email = request.email.lower()
        check_new_password(request.password, email=email, company_name=request.company_name)
        if await self.users.by_email(email) is not None:
            raise conflict("An account with this email already exists. Sign in instead.")
        company = Company(id=new_id("cmp"), name=request.company_name)
        user = User(id=new_id("usr"), email=email, password_hash=hash_password(request.password))
        self.session.add_all([company, user])
        await self.session.flush()
        self.session.add(
            Membership(
                id=new_id("mem"), company_id=company.id, user_id=user.id, role=Role.OWNER.value
            )
        )
        await self.session.flush()
        actor = Actor("user", user.id, email)
        await audit.record(
            self.session,
            company_id=company.id,
            actor=actor,
            origin=self.origin,
            action="account.registered",
            object_type="company",
            object_id=company.id,
            object_name=company.name,
        )
        return await self._start_session(user, company.id)

    async def login(
        self, email: str, password: str, company_id: str | None, database: Database
    ) -> SignedIn:
        email = email.lower()
        user = await self.users.by_email(email)
        memberships = await self.users.memberships(user.id) if user else []
        now = utcnow()

        if user is not None and user.locked_until is not None and user.locked_until > now:
            # Refused whatever the password: answering differently for the right one would
            # tell a guesser when they had it. Saying "locked" reveals that the account
            # exists, which sign-up (409 for a taken email) already does.
            await self.refuse_sign_in(
                database, user, email, "auth.sign_in", "denied", "account locked", count=False
            )
            raise ACCOUNT_LOCKED
        if user is None or not verify_password(user.password_hash, password):
            if await self.refuse_sign_in(
                database, user, email, "auth.sign_in", "failure", "wrong email or password"
            ):
                raise ACCOUNT_LOCKED
            raise SIGN_IN_FAILED
        chosen = next((m for m, _ in memberships if company_id in (None, m.company_id)), None)
        if chosen is None:
            raise SIGN_IN_FAILED
        if needs_rehash(user.password_hash):
            user.password_hash = hash_password(password)
        user.last_sign_in_at = now
        user.failed_sign_ins = 0
        user.locked_until = None
        await audit.record(
            self.session,
            company_id=chosen.company_id,
            actor=Actor("user", user.id, user.email),
            origin=self.origin,
            action="auth.sign_in",
            object_type="user",
            object_id=user.id,
            object_name=user.email,
        )
        return await self._start_session(user, chosen.company_id)

    async def refuse_sign_in(
        self,
        database: Database,
        user: User | None,
        email: str,
        action: str,
        outcome: str,
        detail: str,
        *,
        count: bool = True,
    ) -> bool:
        """Record a refused password check (and count it toward the lockout); True if it locked.

        The request is rolled back on failure: the record and the count get a transaction of
        their own. When this failure locks the account, the user and the owners of their
        companies are told by mail (queued on the outbox, sent after the answer).
        """
        now = utcnow()
        lock_for = timedelta(minutes=self.settings.lockout_minutes)
        threshold = self.settings.lockout_threshold
        actor = Actor("anonymous" if user is None else "user", user.id if user else None, email)
        locked = False
        owners: dict[str, list[str]] = {}
        async with database.transaction() as other:
            users = UserRepository(other)
            if count and user is not None:
                locked = await users.count_failed_sign_in(
                    user.id, threshold=threshold, lock_for=lock_for, now=now
                )
            memberships = await users.memberships(user.id) if user else []
            companies: list[str | None] = [m.company_id for m, _ in memberships] or [None]
            entries = [(action, outcome, detail)]
            if locked:
                entries.append(("auth.account_locked", "success", f"{threshold} failures"))
            for company_id in companies:
                for action_, outcome_, detail_ in entries:
                    await audit.record(
                        other,
                        company_id=company_id,
                        actor=actor,
                        origin=self.origin,
                        action=action_,
                        object_type="user",
                        object_id=user.id if user else None,
                        object_name=user.email if user else None,
                        outcome=outcome_,
                        detail=detail_,
                    )
            if locked and user is not None:
                owners = await users.owners_of(
                    [m.company_id for m, _ in memberships], except_user_id=user.id
                )
        if locked and user is not None:
            self._tell_about_lock(
                LockedAccount(user.email, now + lock_for, self.origin.ip), owners, threshold
            )
        return locked

    def _tell_about_lock(
        self, locked: LockedAccount, owners: dict[str, list[str]], threshold: int
    ) -> None:
        """One message to the user, one to each owner (never one mail across companies)."""
        self.outbox.add(account_locked_email(self.settings, locked, threshold))
        for owner_email, company_names in owners.items():
            self.outbox.add(
                member_locked_email(self.settings, owner_email, company_names, locked, threshold)
            )

    async def _start_session(self, user: User, company_id: str) -> SignedIn:
        now = utcnow()
        auth_session = AuthSession(
            id=new_id("ses"),
            company_id=company_id,
            user_id=user.id,
            expires_at=now + timedelta(seconds=self.settings.refresh_token_ttl_seconds),
            last_used_at=now,
            ip=self.origin.ip,
            user_agent=self.origin.user_agent,
        )
        self.session.add(auth_session)
        await self.session.flush()
        return SignedIn(await self._issue(auth_session), user, company_id)

    async def _issue(self, auth_session: AuthSession) -> TokenPair:
        refresh = new_opaque_token("pgr")
        self.session.add(
            RefreshToken(
                id=new_id("rt"), session_id=auth_session.id, token_hash=token_digest(refresh)
            )
        )
        await self.session.flush()
        access, _ = issue_access_token(
            self.settings.jwt_secret.get_secret_value(),
            user_id=auth_session.user_id,
            company_id=auth_session.company_id,
            session_id=auth_session.id,
            ttl_seconds=self.settings.access_token_ttl_seconds,
        )
        return TokenPair(
            access_token=access,
            refresh_token=refresh,
            expires_in=self.settings.access_token_ttl_seconds,
        )

    async def refresh(self, refresh_token: str, database: Database) -> TokenPair:
        """Rotate: the old token is spent; presenting a spent one revokes its whole family."""
        found = await self.users.refresh_token(token_digest(refresh_token))
        invalid = Problem(
            401,
            "invalid-refresh-token",
            "Refresh failed",
            "The refresh token is invalid, expired or revoked.",
        )
        if found is None:
            raise invalid
        token, auth_session = found
        now = utcnow()
        grace = timedelta(seconds=self.settings.refresh_reuse_grace_seconds)
        if token.used_at is not None and now - token.used_at > grace:
            # Reuse means the token leaked: end the family, in a transaction that commits
            # even though this request answers 401.
            async with database.transaction() as other:
                ended = await UserRepository(other).revoke_sessions(
                    reason="refresh_token_reused", session_id=auth_session.id
                )
                # No one is here to retry: should Redis be down, end the family in PostgreSQL
                # all the same (no refresh works, PostgreSQL-reading nodes refuse its tokens);
                # nodes that read Redis accept its last access token until it expires.
                with suppress(RevocationUnavailable):
                    await self.revocations.revoke_all(
                        other, [auth_session.id, *ended], self.revocations.session_until()
                    )
                await audit.record(
                    other,
                    company_id=auth_session.company_id,
                    actor=Actor("user", auth_session.user_id, None),
                    origin=self.origin,
                    action="auth.refresh_token_reused",
                    object_type="session",
                    object_id=auth_session.id,
                    outcome="denied",
                )
            raise invalid
        if auth_session.revoked_at is not None or auth_session.expires_at <= now:
            raise invalid
        # Within the grace period a second use is two requests of one browser racing
        # after the access token expired, not a theft: both get fresh tokens.
        token.used_at = token.used_at or now
        auth_session.last_used_at = now
        return await self._issue(auth_session)

    async def logout(self, auth: AuthContext) -> None:
        if auth.session_id is None:
            raise _NOT_A_SESSION
        if auth.token_id is not None and auth.token_expires_at is not None:
            await self.revocations.revoke(self.session, auth.token_id, auth.token_expires_at)
        await self._end_sessions(reason="signed_out", session_id=auth.session_id)
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="auth.sign_out",
            object_type="session",
            object_id=auth.session_id,
        )

    # --- members -----------------------------------------------------------------

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
                await self.refuse_sign_in(
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
                if await self.refuse_sign_in(
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
        return await self._start_session(user, invitation.company_id)

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
        ended = await self.end_all_sessions(
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

    # --- sign-in sessions -------------------------------------------------------------

    async def _end_sessions(
        self,
        *,
        reason: str,
        session_id: str | None = None,
        user_id: str | None = None,
        company_id: str | None = None,
        except_session_id: str | None = None,
    ) -> int:
        """Mark sessions ended and put them on the revocation list; how many ended."""
        ended = await self.users.revoke_sessions(
            reason=reason,
            session_id=session_id,
            user_id=user_id,
            company_id=company_id,
            except_session_id=except_session_id,
        )
        # The named session is listed even if it was already marked ended: the caller
        # means "no token of it may work", whatever its row says.
        identifiers = [*ended, *([session_id] if session_id else [])]
        await self.revocations.revoke_all(
            self.session, identifiers, self.revocations.session_until()
        )
        return len(ended)

    async def end_all_sessions(
        self,
        user_id: str,
        reason: str,
        *,
        except_session_id: str | None = None,
        company_id: str | None = None,
    ) -> int:
        """End every sign-in session of a user at once; how many ended.

        Each session is marked ended (`revoked_at`, `revoked_reason=reason`), so it cannot
        be refreshed, and put on the revocation list, so its access tokens are refused by
        every process from now on. `except_session_id` keeps one (the caller's own, after
        a password change); `company_id` limits it to one company (member removal, role
        change), otherwise every company's sessions end (password change or reset).
        The caller records the audit entry of the cause.
        """
        return await self._end_sessions(
            reason=reason,
            user_id=user_id,
            company_id=company_id,
            except_session_id=except_session_id,
        )

    async def my_sessions(self, auth: AuthContext) -> Sequence[AuthSession]:
        if auth.user_id is None:
            raise _NOT_A_SESSION
        return await self.users.live_sessions(auth.user_id, auth.company_id)

    async def end_my_session(self, auth: AuthContext, session_id: str) -> None:
        """End one of the caller's sessions in this company; the current one signs out."""
        if auth.user_id is None:
            raise _NOT_A_SESSION
        mine = {s.id for s in await self.users.live_sessions(auth.user_id, auth.company_id)}
        if session_id not in mine:
            raise not_found("session")
        if session_id == auth.session_id:
            await self.logout(auth)
            return
        await self._end_sessions(reason="ended_by_user", session_id=session_id)
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="auth.session_ended",
            object_type="session",
            object_id=session_id,
        )

    async def end_my_other_sessions(self, auth: AuthContext) -> int:
        """End the caller's sessions in this company except the one in use."""
        if auth.user_id is None or auth.session_id is None:
            raise _NOT_A_SESSION
        ended = await self.end_all_sessions(
            auth.user_id,
            "ended_by_user",
            company_id=auth.company_id,
            except_session_id=auth.session_id,
        )
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="auth.other_sessions_ended",
            object_type="user",
            object_id=auth.user_id,
            object_name=auth.actor_label,
            detail=f"{ended} session(s) ended",
        )
        return ended

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
        return await self.end_all_sessions(
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

    # --- API keys ----------------------------------------------------------------

    async def create_api_key(self, auth: AuthContext, request: ApiKeyCreate) -> tuple[ApiKey, str]:
        scopes = set(request.scopes)
        # A key can never do more than the person who made it.
        beyond = sorted(scope.value for scope in scopes - auth.permissions)
        if beyond:
            raise forbidden(f"You cannot grant scopes you do not hold: {', '.join(beyond)}.")
        now = utcnow()
        expires_at = request.expires_at
        if request.expires_in_days is not None:
            expires_at = now + timedelta(days=request.expires_in_days)
        if expires_at is not None:
            if expires_at <= now:
                raise validation_failed([FieldError("expires_at", "must be in the future")])
            if expires_at > now + timedelta(days=MAX_API_KEY_LIFETIME_DAYS):
                raise validation_failed(
                    [FieldError("expires_at", "must be at most two years (730 days) ahead")]
                )
        return await self._issue_api_key(
            auth, name=request.name, scopes=sorted(s.value for s in scopes), expires_at=expires_at
        )

    async def _issue_api_key(
        self,
        auth: AuthContext,
        *,
        name: str,
        scopes: list[str],
        expires_at: datetime | None,
        rotated_from: str | None = None,
    ) -> tuple[ApiKey, str]:
        key = new_opaque_token(API_KEY_PREFIX.rstrip("_"))
        api_key = await ApiKeyRepository(self.session, auth.company_id).add(
            ApiKey(
                id=new_id("key"),
                company_id=auth.company_id,
                name=name,
                prefix=key[: len(API_KEY_PREFIX) + 8],
                key_hash=token_digest(key),
                scopes=scopes,
                created_by=auth.user_id,
                expires_at=expires_at,
                rotated_from=rotated_from,
            )
        )
        changes: dict[str, Any] = {
            "name": {"before": None, "after": api_key.name},
            "scopes": {"before": None, "after": api_key.scopes},
            "expires_at": {"before": None, "after": _iso(expires_at)},
        }
        if rotated_from is not None:
            changes["rotated_from"] = {"before": None, "after": rotated_from}
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="api_key.created",
            object_type="api_key",
            object_id=api_key.id,
            object_name=api_key.name,
            changes=changes,
        )
        return api_key, key

    async def rotate_api_key(
        self, auth: AuthContext, key_id: str, grace_period_hours: int
    ) -> tuple[ApiKey, str, ApiKey]:
        """Issue a replacement with the same name, scopes and lifetime; the old key works on
        for the grace period only. Returns the new key, its secret and the old key."""
        if not 0 <= grace_period_hours <= MAX_ROTATION_GRACE_HOURS:
            raise validation_failed(
                [FieldError("grace_period_hours", "must be between 0 and 168 (7 days)")]
            )
        old = await ApiKeyRepository(self.session, auth.company_id).get(key_id, for_update=True)
        now = utcnow()
        # The caller gets the new secret: like creating a key, rotating one never hands out
        # scopes the caller does not hold now (another member's key, or a demoted creator's).
        beyond = sorted(set(old.scopes) - {p.value for p in auth.permissions})
        if beyond:
            raise forbidden(
                "You cannot rotate a key with scopes you do not hold: "
                f"{', '.join(beyond)}. Ask someone who holds them."
            )
        if old.revoked_at is not None:
            raise conflict("This key is revoked, so it cannot be rotated. Create a new key.")
        if old.replaced_by is not None:
            raise conflict(
                f"This key was already rotated; rotate its replacement {old.replaced_by} instead."
            )
        if old.expires_at is not None and old.expires_at <= now:
            raise conflict("This key has expired, so it cannot be rotated. Create a new key.")
        # Same expiry policy: a key that lived N days is replaced by one that lives N days.
        lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
        new, secret = await self._issue_api_key(
            auth,
            name=old.name,
            scopes=list(old.scopes),
            expires_at=now + lifetime if lifetime is not None else None,
            rotated_from=old.id,
        )
        before = old.expires_at
        grace_end = now + timedelta(hours=grace_period_hours)
        old.expires_at = min(before, grace_end) if before is not None else grace_end
        old.replaced_by = new.id
        await self.session.flush()
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="api_key.rotated",
            object_type="api_key",
            object_id=old.id,
            object_name=old.name,
            changes={
                "expires_at": {"before": _iso(before), "after": _iso(old.expires_at)},
                "replaced_by": {"before": None, "after": new.id},
            },
            detail=f"grace period {grace_period_hours} h",
        )
        return new, secret, old

    async def revoke_api_key(self, auth: AuthContext, key_id: str) -> ApiKey:
        api_key = await ApiKeyRepository(self.session, auth.company_id).get(key_id, for_update=True)
        if api_key.revoked_at is None:
            api_key.revoked_at = utcnow()
            await audit.record(
                self.session,
                company_id=auth.company_id,
                actor=auth.actor,
                origin=self.origin,
                action="api_key.revoked",
                object_type="api_key",
                object_id=api_key.id,
                object_name=api_key.name,
            )
        return api_key


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def permissions_of(role: Role) -> list[Permission]:
    return sorted(ROLE_PERMISSIONS[role], key=lambda p: p.value)
