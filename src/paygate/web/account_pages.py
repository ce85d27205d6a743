"""Your account: the password page and your active sessions. API keys are in
api_key_pages.py, members and invitations in member_pages.py."""

from __future__ import annotations

from fastapi import APIRouter, BackgroundTasks, Request, Response

from paygate.accounts.auth import AuthContext
from paygate.accounts.passwords import PasswordService
from paygate.accounts.schemas import PasswordChange
from paygate.accounts.service import AccountService
from paygate.accounts.sessions import SessionService
from paygate.kit.deps import DatabaseDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.kit.ids import ObjectId
from paygate.security.rate_limits import rate_limit
from paygate.web.forms import FormErrors, parse, text
from paygate.web.render import Notice, PageRoute, is_htmx, redirect, render, section_response
from paygate.web.session import User, accounts_of, end_session, flash

router = APIRouter(route_class=PageRoute)


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


# --- active sessions --------------------------------------------------------------------


async def _sessions_response(
    request: Request, auth: AuthContext, accounts: AccountService, notice: Notice | None = None
) -> Response:
    context = {"sessions": await SessionService(accounts).my_sessions(auth)}
    return section_response(request, auth, "account/sessions", context, notice=notice)


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
