"""Your account (password and active sessions), API keys and members pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, BackgroundTasks, Request, Response

from paygate.accounts.api_keys import ApiKeyService
from paygate.accounts.auth import AuthContext
from paygate.accounts.members import MemberService
from paygate.accounts.passwords import PasswordService
from paygate.accounts.permissions import (
    PERMISSION_DESCRIPTIONS,
    ROLE_DESCRIPTIONS,
    Permission,
    Role,
)
from paygate.accounts.repository import ApiKeyRepository, InvitationRepository, MembershipRepository
from paygate.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyRotate,
    InviteRequest,
    PasswordChange,
    RoleChange,
)
from paygate.accounts.service import AccountService
from paygate.accounts.sessions import SessionService
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.security.rate_limits import rate_limit
from paygate.web.forms import FormErrors, parse, text, texts
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render
from paygate.web.session import User, accounts_of, end_session, flash, need

router = APIRouter(route_class=PageRoute)


def _accounts(
    request: Request, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> AccountService:
    return accounts_of(request, session, settings, origin)


# --- your account -----------------------------------------------------------------------


def _account_page(
    request: Request, auth: AuthContext, errors: FormErrors, *, status_code: int = 200
) -> Response:
    return render(
        request, "account/index.html", {"errors": errors}, auth=auth, status_code=status_code
    )


@router.get("/account")
async def account_page(request: Request, auth: User) -> Response:
    return _account_page(request, auth, FormErrors())


@router.post("/account/password")
async def change_password(
    request: Request,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
    database: DatabaseDep,
    background: BackgroundTasks,
) -> Response:
    form = await request.form()
    accounts = accounts_of(request, session, settings, origin)
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            await rate_limit(request, "sign_in", account=auth.actor_id)
            body = parse(
                PasswordChange,
                {
                    "current_password": text(form, "current_password"),
                    "new_password": text(form, "new_password"),
                },
            )
            await PasswordService(accounts).change(
                auth, body.current_password, body.new_password, database
            )
    except Problem as problem:
        # A lockout notice, when the wrong current password locked the account.
        accounts.outbox.send_after_response(background, settings)
        errors = FormErrors.from_problem(
            problem,
            ["current_password", "new_password"],
            labels={"current_password": "Current password", "new_password": "New password"},
        )
        return _account_page(
            request,
            auth,
            errors,
            status_code=problem.status if problem.status in (403, 422, 429) else 400,
        )
    accounts.outbox.send_after_response(background, settings)
    flash(request, "password_changed")
    return redirect("/account", request)


# --- API keys ---------------------------------------------------------------------------


async def _keys_context(session: SessionDep, auth: AuthContext, **extra: Any) -> dict[str, Any]:
    context: dict[str, Any] = {
        "keys": await ApiKeyRepository(session, auth.company_id).active(),
        "scopes": list(Permission),
        "scope_descriptions": PERMISSION_DESCRIPTIONS,
        "errors": FormErrors(),
        "values": {"name": "", "scopes": [], "expires_in_days": ""},
        "created": None,
        "rotate_errors": None,
        "now": utcnow(),
    }
    context.update(extra)
    return context


def _section_response(
    request: Request,
    auth: AuthContext,
    folder: str,
    context: dict[str, Any],
    *,
    status_code: int = 200,
    notice: Notice | None = None,
) -> Response:
    """htmx swaps just the page's section; a plain form post gets the whole page."""
    template = f"{folder}/_section.html" if is_htmx(request) else f"{folder}/index.html"
    return render(request, template, context, auth=auth, status_code=status_code, notice=notice)


@router.get("/api-keys")
async def api_keys_page(request: Request, auth: User, session: SessionDep) -> Response:
    await need(request, auth, Permission.API_KEYS_READ)
    return render(request, "api_keys/index.html", await _keys_context(session, auth), auth=auth)


@router.post("/api-keys")
async def create_api_key(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    form = await request.form()
    values = {
        "name": text(form, "name"),
        "scopes": texts(form, "scopes"),
        "expires_in_days": text(form, "expires_in_days").strip(),
    }
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            fields: dict[str, Any] = {"name": values["name"], "scopes": values["scopes"]}
            if values["expires_in_days"]:
                fields["expires_in_days"] = values["expires_in_days"]
            body = parse(ApiKeyCreate, fields)
            api_key, key = await ApiKeyService(
                accounts_of(request, session, settings, origin)
            ).create_api_key(auth, body)
    except Problem as problem:
        errors = FormErrors.from_problem(
            problem,
            ["name", "scopes", "expires_in_days"],
            labels={"name": "Name", "scopes": "Scopes", "expires_in_days": "Expiry"},
        )
        # "scopes.3" (an unknown scope) belongs next to the scope checkboxes.
        for message in list(errors.general):
            if message.lower().startswith("scopes"):
                errors.general.remove(message)
                errors.fields.setdefault("scopes", []).append(message)
        context = await _keys_context(session, auth, errors=errors, values=values)
        return _section_response(request, auth, "api_keys", context, status_code=422)
    # The key itself is rendered this once, into a no-store response; only its prefix is kept.
    context = await _keys_context(session, auth, created={"name": api_key.name, "key": key})
    return _section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {api_key.name} created."),
    )


@router.post("/api-keys/{key_id}/rotate")
async def rotate_api_key(
    request: Request,
    key_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    form = await request.form()
    grace = text(form, "grace_period_hours").strip()
    try:
        # A savepoint: a refused rotation leaves nothing behind, even in memory.
        async with session.begin_nested():
            body = parse(ApiKeyRotate, {"grace_period_hours": grace} if grace else {})
            new, key, old = await ApiKeyService(
                accounts_of(request, session, settings, origin)
            ).rotate_api_key(auth, key_id, body.grace_period_hours)
    except Problem as problem:
        if problem.status == 404:
            raise
        message = (
            "Enter a number of hours from 0 to 168 (7 days)."
            if problem.errors
            else problem.detail or problem.title
        )
        context = await _keys_context(
            session, auth, rotate_errors={"key_id": key_id, "message": message, "value": grace}
        )
        return _section_response(
            request,
            auth,
            "api_keys",
            context,
            status_code=problem.status,
            notice=Notice("error", message),
        )
    # Like creation: the new key is rendered this once, into a no-store response.
    created = {
        "name": new.name,
        "key": key,
        "previous_prefix": old.prefix,
        "previous_stops_at": old.expires_at,
    }
    context = await _keys_context(session, auth, created=created)
    return _section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {new.name} rotated."),
    )


@router.post("/api-keys/{key_id}/revoke")
async def revoke_api_key(
    request: Request,
    key_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    await need(request, auth, Permission.API_KEYS_WRITE)
    api_key = await ApiKeyService(accounts_of(request, session, settings, origin)).revoke_api_key(
        auth, key_id
    )
    if not is_htmx(request):
        flash(request, "api_key_revoked")
        return redirect("/api-keys", request)
    context = await _keys_context(session, auth)
    return _section_response(
        request,
        auth,
        "api_keys",
        context,
        notice=Notice("success", f"API key {api_key.name} revoked."),
    )


# --- members ----------------------------------------------------------------------------


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
            invitation, url = await MemberService(
                accounts_of(request, session, settings, origin)
            ).invite(auth, body)
    except Problem as problem:
        errors = FormErrors.from_problem(
            problem, ["email", "role"], labels={"email": "Email", "role": "Role"}
        )
        context = await _members_context(session, auth, errors=errors, values=values)
        return _section_response(request, auth, "members", context, status_code=422)
    context = await _members_context(session, auth, invite_url=url, invited=invitation.email)
    return _section_response(
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
        return _section_response(
            request, auth, "members", await _members_context(session, auth), notice=notice
        )
    if not is_htmx(request):
        flash(request, flash_key)
        return redirect("/members", request)
    return _section_response(
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
    action = MemberService(accounts_of(request, session, settings, origin)).change_role(
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
    action = MemberService(accounts_of(request, session, settings, origin)).remove_member(
        auth, membership_id
    )
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
    action = MemberService(accounts_of(request, session, settings, origin)).unlock_member(
        auth, membership_id
    )
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
    action = MemberService(accounts_of(request, session, settings, origin)).end_member_sessions(
        auth, membership_id
    )
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
    action = MemberService(accounts_of(request, session, settings, origin)).revoke_invitation(
        auth, invitation_id
    )
    return await _member_action(
        request, auth, session, "invitation_revoked", "Invitation revoked.", action
    )


# --- active sessions --------------------------------------------------------------------


async def _sessions_response(
    request: Request, auth: AuthContext, accounts: AccountService, notice: Notice | None = None
) -> Response:
    context = {"sessions": await SessionService(accounts).my_sessions(auth)}
    return _section_response(request, auth, "account/sessions", context, notice=notice)


@router.get("/account/sessions")
async def sessions_page(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    accounts = accounts_of(request, session, settings, origin)
    return render(
        request,
        "account/sessions/index.html",
        {"sessions": await SessionService(accounts).my_sessions(auth)},
        auth=auth,
    )


@router.post("/account/sessions/end-others")
async def end_other_sessions(
    request: Request, auth: User, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    accounts = accounts_of(request, session, settings, origin)
    ended = await SessionService(accounts).end_my_other_sessions(auth)
    if not is_htmx(request):
        flash(request, "other_sessions_ended")
        return redirect("/account/sessions", request)
    notice = Notice("success", f"{ended} other session(s) ended.")
    return await _sessions_response(request, auth, accounts, notice)


@router.post("/account/sessions/{session_id}/end")
async def end_one_session(
    request: Request,
    session_id: ObjectId,
    auth: User,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
) -> Response:
    accounts = accounts_of(request, session, settings, origin)
    await SessionService(accounts).end_my_session(auth, session_id)
    if session_id == auth.session_id:
        # The session in use: this browser is signed out, as with "Sign out".
        end_session(request)
        flash(request, "signed_out")
        return redirect("/login", request)
    if not is_htmx(request):
        flash(request, "session_ended")
        return redirect("/account/sessions", request)
    return await _sessions_response(request, auth, accounts, Notice("success", "Session ended."))
