"""Changing a password, and resetting a forgotten one through an emailed one-time link."""

from __future__ import annotations

from datetime import timedelta

from paygate.accounts.auth import AuthContext
from paygate.accounts.models import PasswordReset, User
from paygate.accounts.notices import password_changed_email, reset_link_email
from paygate.accounts.service import AccountService, check_new_password
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, Problem, forbidden, validation_failed
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.audit import Actor
from paygate.security.audit_actions import AuditAction
from paygate.security.passwords import hash_password, verify_password
from paygate.security.tokens import new_opaque_token, token_digest

RESET_TOKEN_PREFIX = "pgp"
RESET_REQUESTED = (
    "If an account uses this address, we sent it a link to choose a new password. "
    "Check your mail; the link works once and expires soon."
)
INVALID_RESET = Problem(
    400,
    "invalid-reset-token",
    "Reset link not valid",
    "This reset link is invalid, has expired, or was already used. Ask for a new one.",
)
LOCKED_FOR_CHANGE = Problem(
    403,
    "account-locked",
    "Account locked",
    "This account is locked after too many wrong passwords. Wait for the lock to end, "
    "ask an owner of your company to unlock it, or reset your password by email.",
)


class PasswordService:
    """Password changes and resets; the messages to send wait on `accounts.outbox`."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.session = accounts.session
        self.settings = accounts.settings
        self.origin = accounts.origin
        self.users = accounts.users
        self.outbox = accounts.outbox

    async def _company_names(self, user: User) -> tuple[list[str], tuple[str, ...]]:
        memberships = await self.users.memberships(user.id)
        return [m.company_id for m, _ in memberships], tuple(c.name for _, c in memberships)

    async def _record(
        self,
        user: User,
        company_ids: list[str],
        actor: Actor,
        action: AuditAction,
        detail: str | None = None,
    ) -> None:
        # A user belongs to no company of their own: each company they work in sees it.
        targets: list[str | None] = [*company_ids] or [None]
        for company_id in targets:
            await audit.record(
                self.session,
                company_id=company_id,
                actor=actor,
                origin=self.origin,
                action=action,
                object_type="user",
                object_id=user.id,
                object_name=user.email,
                changes={"password": {"before": audit.CHANGED, "after": audit.CHANGED}},
                detail=detail,
            )

    # --- change, signed in --------------------------------------------------------------

    async def change(
        self, auth: AuthContext, current_password: str, new_password: str, database: Database
    ) -> int:
        """Set a new password after checking the current one; how many other sessions ended."""
        if auth.actor_type != "user" or auth.user_id is None or auth.session_id is None:
            raise forbidden("Only a signed-in person changes their password, not an API key.")
        user = await self.users.by_id(auth.user_id)
        if user is None:
            raise forbidden("This account no longer exists.")
        now = utcnow()
        if user.locked_until is not None and user.locked_until > now:
            raise LOCKED_FOR_CHANGE
        if not verify_password(user.password_hash, current_password):
            # A stolen session must not become a password-guessing oracle: a wrong current
            # password counts like a failed sign-in, toward the same lockout.
            locked = await self.accounts.refuse_sign_in(
                database,
                user,
                user.email,
                "auth.password_changed",
                "failure",
                "wrong current password",
            )
            if locked:
                raise LOCKED_FOR_CHANGE
            raise validation_failed(
                [FieldError("current_password", "The current password is wrong.", "wrong_password")]
            )
        company_ids, company_names = await self._company_names(user)
        check_new_password(
            new_password, email=user.email, company_names=company_names, field="new_password"
        )
        if verify_password(user.password_hash, new_password):
            raise validation_failed(
                [
                    FieldError(
                        "new_password",
                        "The new password is the same as the current one: choose another.",
                        "same_password",
                    )
                ]
            )
        user.password_hash = hash_password(new_password)
        user.failed_sign_ins = 0
        ended = await self.accounts.end_all_sessions(
            user.id, "password_changed", except_session_id=auth.session_id
        )
        # Any reset link sent earlier would undo this change: void it.
        await self.users.revoke_password_resets(user.id, now)
        await self._record(
            user,
            company_ids,
            Actor("user", user.id, user.email),
            "auth.password_changed",
            f"{ended} other sessions ended",
        )
        self.outbox.add(
            password_changed_email(
                self.settings, user.email, how="changed", when=now, ip=self.origin.ip
            )
        )
        return ended

    # --- reset by email -------------------------------------------------------------------

    async def request_reset(self, email: str) -> None:
        """Queue a one-time reset link for the account of `email`, if there is one.

        The caller answers the same either way, and the work is alike: the token is made
        (and hashed) whether or not it will be stored, and the mail goes out after the answer.
        """
        email = email.lower()
        user = await self.users.by_email(email)
        token = new_opaque_token(RESET_TOKEN_PREFIX)
        digest = token_digest(token)
        now = utcnow()
        if user is None:
            await audit.record(
                self.session,
                company_id=None,
                actor=Actor("anonymous", None, email),
                origin=self.origin,
                action="auth.password_reset_requested",
                outcome="failure",
                detail="no account with this email",
            )
            return
        await self.users.revoke_password_resets(user.id, now)
        self.session.add(
            PasswordReset(
                id=new_id("pwr"),
                user_id=user.id,
                token_digest=digest,
                expires_at=now + timedelta(minutes=self.settings.password_reset_ttl_minutes),
                requested_ip=self.origin.ip,
            )
        )
        await self.session.flush()
        company_ids, _ = await self._company_names(user)
        targets: list[str | None] = [*company_ids] or [None]
        for company_id in targets:
            await audit.record(
                self.session,
                company_id=company_id,
                actor=Actor("anonymous", None, email),
                origin=self.origin,
                action="auth.password_reset_requested",
                object_type="user",
                object_id=user.id,
                object_name=user.email,
            )
        link = f"{self.settings.base_url}/reset-password?token={token}"
        self.outbox.add(reset_link_email(self.settings, user.email, link))

    async def reset_target(self, token: str) -> User | None:
        """Whose password a still-valid reset token would set (for the reset page)."""
        reset = await self.users.open_password_reset(token_digest(token), utcnow())
        return await self.users.by_id(reset.user_id) if reset else None

    async def confirm_reset(self, token: str, new_password: str) -> User:
        """Spend the token: new password, lockout lifted, every session ended."""
        now = utcnow()
        reset = await self.users.open_password_reset(token_digest(token), now)
        if reset is None:
            raise INVALID_RESET
        user = await self.users.by_id(reset.user_id)
        if user is None:
            raise INVALID_RESET
        company_ids, company_names = await self._company_names(user)
        # Refused before anything changes: the link stays usable for a better password.
        check_new_password(
            new_password, email=user.email, company_names=company_names, field="new_password"
        )
        user.password_hash = hash_password(new_password)
        lifted = user.locked_until is not None and user.locked_until > now
        user.failed_sign_ins = 0
        user.locked_until = None
        reset.used_at = now
        await self.users.revoke_password_resets(user.id, now)
        ended = await self.accounts.end_all_sessions(user.id, "password_reset")
        detail = f"{ended} sessions ended" + ("; sign-in lock lifted" if lifted else "")
        await self._record(
            user, company_ids, Actor("user", user.id, user.email), "auth.password_reset", detail
        )
        self.outbox.add(
            password_changed_email(
                self.settings, user.email, how="reset by email link", when=now, ip=self.origin.ip
            )
        )
        return user
