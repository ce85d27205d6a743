"""A person's own sign-in sessions in a company: list them, end one, end all the others."""

from __future__ import annotations

from collections.abc import Sequence

from paygate.accounts.auth import AuthContext
from paygate.accounts.models import AuthSession
from paygate.accounts.service import NOT_A_SESSION, AccountService
from paygate.kit.errors import not_found
from paygate.security import audit


class SessionService:
    """The caller's own sessions; ending them goes through `AccountService.end_sessions`."""

    def __init__(self, accounts: AccountService) -> None:
        self.accounts = accounts
        self.session = accounts.session
        self.origin = accounts.origin
        self.users = accounts.users

    async def my_sessions(self, auth: AuthContext) -> Sequence[AuthSession]:
        if auth.user_id is None:
            raise NOT_A_SESSION
        return await self.users.live_sessions(auth.user_id, auth.company_id)

    async def end_my_session(self, auth: AuthContext, session_id: str) -> None:
        """End one of the caller's sessions in this company; the current one signs out."""
        if auth.user_id is None:
            raise NOT_A_SESSION
        mine = {s.id for s in await self.users.live_sessions(auth.user_id, auth.company_id)}
        if session_id not in mine:
            raise not_found("session")
        if session_id == auth.session_id:
            await self.accounts.logout(auth)
            return
        await self.accounts.end_sessions(reason="ended_by_user", session_id=session_id)
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
            raise NOT_A_SESSION
        ended = await self.accounts.end_all_sessions(
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
