"""The sign-in sessions JSON API: your own sessions (list, end one, end the others) and an
owner's view of a member's sessions (list, end them all)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from paygate.accounts.auth import AuthContext, Authenticated, require
from paygate.accounts.endpoints import Accounts
from paygate.accounts.members import MemberService
from paygate.accounts.models import AuthSession
from paygate.accounts.permissions import Permission
from paygate.accounts.schemas import SessionOut, SessionsEnded
from paygate.accounts.sessions import SessionService
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


def session_out(auth_session: AuthSession, auth: AuthContext) -> SessionOut:
    return SessionOut(
        id=auth_session.id,
        created_at=auth_session.created_at,
        last_used_at=auth_session.last_used_at,
        expires_at=auth_session.expires_at,
        ip=auth_session.ip,
        user_agent=auth_session.user_agent,
        current=auth_session.id == auth.session_id,
    )


@router.get("/sessions", response_model=list[SessionOut])
async def list_my_sessions(auth: Authenticated, accounts: Accounts) -> list[SessionOut]:
    """Where you are signed in to this company (browsers and apps), newest first."""
    return [session_out(s, auth) for s in await SessionService(accounts).my_sessions(auth)]


@router.post("/sessions/end-others", response_model=SessionsEnded)
async def end_my_other_sessions(auth: Authenticated, accounts: Accounts) -> SessionsEnded:
    """Sign out everywhere else: every session of yours in this company but this one."""
    return SessionsEnded(ended=await SessionService(accounts).end_my_other_sessions(auth))


@router.delete("/sessions/{session_id}", status_code=status.HTTP_204_NO_CONTENT)
async def end_my_session(session_id: ObjectId, auth: Authenticated, accounts: Accounts) -> Response:
    """End one of your sessions; ending the one in use signs you out."""
    await SessionService(accounts).end_my_session(auth, session_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/members/{membership_id}/sessions", response_model=list[SessionOut])
async def list_member_sessions(
    membership_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> list[SessionOut]:
    """Owners: where a member is signed in to this company."""
    _, sessions = await MemberService(accounts).member_sessions(auth, membership_id)
    return [session_out(s, auth) for s in sessions]


@router.delete("/members/{membership_id}/sessions", response_model=SessionsEnded)
async def end_member_sessions(
    membership_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> SessionsEnded:
    """Owners: sign a member out of this company everywhere, at once."""
    return SessionsEnded(
        ended=await MemberService(accounts).end_member_sessions(auth, membership_id)
    )
