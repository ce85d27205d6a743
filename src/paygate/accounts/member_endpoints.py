"""The members JSON API: a company's members and pending invitations, inviting, revoking an
invitation, changing a role, lifting a lockout, removing a member."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Response, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.endpoints import Accounts
from paygate.accounts.members import MemberService
from paygate.accounts.models import Invitation, User
from paygate.accounts.permissions import Permission, Role
from paygate.accounts.repository import InvitationRepository, MembershipRepository
from paygate.accounts.schemas import InvitationOut, InviteRequest, MemberOut, MembersOut, RoleChange
from paygate.kit.clock import utcnow
from paygate.kit.deps import SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


def invitation_out(invitation: Invitation, invite_url: str | None = None) -> InvitationOut:
    return InvitationOut(
        id=invitation.id,
        email=invitation.email,
        role=Role(invitation.role),
        created_at=invitation.created_at,
        expires_at=invitation.expires_at,
        invite_url=invite_url,
    )


def _locked_until(user: User) -> datetime | None:
    return user.locked_until if user.locked_until and user.locked_until > utcnow() else None


@router.get("/members", response_model=MembersOut)
async def list_members(
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_READ))], session: SessionDep
) -> MembersOut:
    members = await MembershipRepository(session, auth.company_id).with_users()
    invitations = await InvitationRepository(session, auth.company_id).pending()
    return MembersOut(
        members=[
            MemberOut(
                id=m.id,
                user_id=u.id,
                email=u.email,
                role=Role(m.role),
                created_at=m.created_at,
                locked_until=_locked_until(u),
            )
            for m, u in members
        ],
        invitations=[invitation_out(i) for i in invitations],
    )


@router.post("/members", status_code=status.HTTP_201_CREATED, response_model=InvitationOut)
async def invite_member(
    body: InviteRequest,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> InvitationOut:
    invitation, url = await MemberService(accounts).invite(auth, body)
    return invitation_out(invitation, url)


@router.delete("/invitations/{invitation_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_invitation(
    invitation_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> Response:
    await MemberService(accounts).revoke_invitation(auth, invitation_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.patch("/members/{membership_id}", response_model=MemberOut)
async def change_member_role(
    membership_id: ObjectId,
    body: RoleChange,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> MemberOut:
    membership = await MemberService(accounts).change_role(auth, membership_id, body.role)
    user = await accounts.users.by_id(membership.user_id)
    assert user is not None
    return MemberOut(
        id=membership.id,
        user_id=user.id,
        email=user.email,
        role=Role(membership.role),
        created_at=membership.created_at,
        locked_until=_locked_until(user),
    )


@router.post("/members/{membership_id}/unlock", response_model=MemberOut)
async def unlock_member(
    membership_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> MemberOut:
    """End a member's sign-in lockout now (owners only: members:write is theirs alone)."""
    membership = await MemberService(accounts).unlock_member(auth, membership_id)
    user = await accounts.users.by_id(membership.user_id)
    assert user is not None
    return MemberOut(
        id=membership.id,
        user_id=user.id,
        email=user.email,
        role=Role(membership.role),
        created_at=membership.created_at,
    )


@router.delete("/members/{membership_id}", status_code=status.HTTP_204_NO_CONTENT)
async def remove_member(
    membership_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.MEMBERS_WRITE))],
    accounts: Accounts,
) -> Response:
    await MemberService(accounts).remove_member(auth, membership_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)
