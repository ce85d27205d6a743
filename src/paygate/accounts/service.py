"""Sign-up, sign-in, token refresh, sign-out and ending sessions: the AccountService the
other account services are built on (members.py, sessions.py, api_keys.py, passwords.py
take it and share its session, settings, origin and outbox)."""

from __future__ import annotations

from contextlib import suppress
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.accounts.models import AuthSession, Company, Membership, RefreshToken, User
from paygate.accounts.notices import (
    LockedAccount,
    Outbox,
    account_locked_email,
    member_locked_email,
)
from paygate.accounts.permissions import Role
from paygate.accounts.repository import UserRepository
from paygate.accounts.schemas import RegisterRequest, TokenPair
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.deps import Origin
from paygate.kit.errors import FieldError, Problem, conflict, validation_failed
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.audit import Actor
from paygate.security.audit_actions import AuditAction
from paygate.security.passwords import (
    hash_password,
    needs_rehash,
    password_problems,
    verify_password,
)
from paygate.security.revocation import RevocationList, RevocationUnavailable
from paygate.security.tokens import issue_access_token, new_opaque_token, token_digest
from paygate.settings import Settings

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

NOT_A_SESSION = Problem(
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
        return await self.start_session(user, company.id)

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
        return await self.start_session(user, chosen.company_id)

    async def refuse_sign_in(
        self,
        database: Database,
        user: User | None,
        email: str,
        action: AuditAction,
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

    async def start_session(self, user: User, company_id: str) -> SignedIn:
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
            raise NOT_A_SESSION
        if auth.token_id is not None and auth.token_expires_at is not None:
            await self.revocations.revoke(self.session, auth.token_id, auth.token_expires_at)
        await self.end_sessions(reason="signed_out", session_id=auth.session_id)
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="auth.sign_out",
            object_type="session",
            object_id=auth.session_id,
        )

    # --- ending sessions -------------------------------------------------------------

    async def end_sessions(
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
        return await self.end_sessions(
            reason=reason,
            user_id=user_id,
            company_id=company_id,
            except_session_id=except_session_id,
        )
