"""The members page: members and pending invitations, inviting, changing a role, lifting a
lockout, ending a member's sessions, removing a member, revoking an invitation."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from paygate.accounts.auth import AuthContext
from paygate.accounts.members import MemberService
from paygate.accounts.permissions import ROLE_DESCRIPTIONS, Permission, Role
from paygate.accounts.repository import InvitationRepository, MembershipRepository
from paygate.accounts.schemas import InviteRequest, RoleChange
from paygate.kit.clock import utcnow
from paygate.kit.deps import OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.web.forms import FormErrors, parse, text
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render, section_response
from paygate.web.session import User, accounts_of, flash, need

router = APIRouter(route_class=PageRoute)


def _members(
    request: Request, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> MemberService:
    return MemberService(accounts_of(request, session, settings, origin))


async def _members_context(session: SessionDep, auth: AuthContext, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "members": await MembershipRepository(session, auth.company_id).with_users(),
        "invitations": await InvitationRepository(session, auth.company_id).pending(),
        "roles": list(Role),
        "role_descriptions": ROLE_DESCRIPTIONS,
        "errors": FormErrors(),
        "values": {"email": "", "role": Role.DEVELOPER.value},
        "invite_url": None,
        "now": utcnow(),
    }
    context.update(extra)
    return context


@router.get("/members")
async def members_page(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.MEMBERS_READ)
    return render(request, "members/index.html", await _members_context(session, auth), auth=auth)


@router.post("/members/invite")
async def invite_member(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    form = await request.form()
    values = {"email": text(form, "email").strip(), "role": text(form, "role")}
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            body = parse(InviteRequest, values)
            invitation, url = await _members(request, session, settings, origin).invite(auth, body)
    except Problem as problem:
        errors = FormErrors.from_problem(
            problem, ["email", "role"], labels={"email": "Email", "role": "Role"}
        )
        context = await _members_context(session, auth, errors=errors, values=values)
        return section_response(request, auth, "members", context, status_code=422)
    context = await _members_context(session, auth, invite_url=url, invited=invitation.email)
    return section_response(
        request,
        auth,
        "members",
        context,
        notice=Notice("success", f"Invitation created for {invitation.email}."),
    )


async def _member_action(
    request: Request, auth: AuthContext, session: SessionDep, flash_key: str, done: str, action: Any
) -> Response:
    """Run one member change; a refusal (the last owner rule) is shown, the list reloaded."""
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            await action
    except Problem as problem:
        if problem.status == 404:
            raise
        notice = Notice("error", problem.detail or problem.title)
        if not is_htmx(request):
            return render(
                request,
                "members/index.html",
                await _members_context(session, auth),
                auth=auth,
                notice=notice,
                status_code=problem.status,
            )
        return section_response(
            request, auth, "members", await _members_context(session, auth), notice=notice
        )
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect("/members", request)
    return section_response(
        request,
        auth,
        "members",
        await _members_context(session, auth),
        notice=Notice("success", done),
    )


@router.post("/members/{membership_id}/role")
async def change_role(
    request: Request,
    membership_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    form = await request.form()
    try:
        body = parse(RoleChange, {"role": text(form, "role")})
    except Problem as problem:
        raise Problem(400, "bad-request", "Bad request", "Choose one of the roles.") from problem
    action = _members(request, session, settings, origin).change_role(
        auth, membership_id, body.role
    )
    return await _member_action(request, auth, session, "member_updated", "Role changed.", action)


@router.post("/members/{membership_id}/remove")
async def remove_member(
    request: Request,
    membership_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    action = _members(request, session, settings, origin).remove_member(auth, membership_id)
    return await _member_action(request, auth, session, "member_removed", "Member removed.", action)


@router.post("/members/{membership_id}/unlock")
async def unlock_member(
    request: Request,
    membership_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    action = _members(request, session, settings, origin).unlock_member(auth, membership_id)
    return await _member_action(
        request, auth, session, "member_unlocked", "Member unlocked.", action
    )


@router.post("/members/{membership_id}/end-sessions")
async def end_member_sessions(
    request: Request,
    membership_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    action = _members(request, session, settings, origin).end_member_sessions(auth, membership_id)
    return await _member_action(
        request, auth, session, "member_sessions_ended", "Sessions ended.", action
    )


@router.post("/invitations/{invitation_id}/revoke")
async def revoke_invitation(
    request: Request,
    invitation_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.MEMBERS_WRITE)
    action = _members(request, session, settings, origin).revoke_invitation(auth, invitation_id)
    return await _member_action(
        request, auth, session, "invitation_revoked", "Invitation revoked.", action
    )
