"""Sign up, sign in, sign out, and accepting an invitation."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request, Response

from paygate.accounts.members import MemberService
from paygate.accounts.passwords import INVALID_RESET, PasswordService
from paygate.accounts.repository import UserRepository, invitation_by_token
from paygate.accounts.schemas import (
    AcceptInvitation,
    LoginRequest,
    PasswordResetConfirm,
    PasswordResetRequest,
    RegisterRequest,
)
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.security.rate_limits import rate_limit
from paygate.security.tokens import token_digest
from paygate.web.forms import FormErrors, parse, text
from paygate.web.navigation import HOME
from paygate.web.render import PageRoute, redirect, render
from paygate.web.session import MaybeUser, accounts_of, end_session, flash, safe_next, start_session

router = APIRouter(route_class=PageRoute)

NextParam = Annotated[str | None, Query(alias="next", max_length=500)]


@router.get("/")
async def home(auth: MaybeUser) -> Response:
    return Response(status_code=303, headers={"Location": HOME if auth else "/login"})


# --- sign in ----------------------------------------------------------------------------


@router.get("/login")
async def login_page(request: Request, auth: MaybeUser, next_: NextParam = None) -> Response:
    if auth is not None:
        return redirect(safe_next(next_), request)
    return render(
        request, "auth/login.html", {"email": "", "next": safe_next(next_), "errors": FormErrors()}
    )


@router.post("/login")
async def login(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
    database: DatabaseDep,
    background: BackgroundTasks,
) -> Response:
    form = await request.form()
    email = text(form, "email").strip()
    target = safe_next(text(form, "next"))
    accounts = accounts_of(request, session, settings, origin)
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            await rate_limit(request, "sign_in", account=email)
            body = parse(LoginRequest, {"email": email, "password": text(form, "password")})
            signed_in = await accounts.login(body.email, body.password, None, database)
    except Problem as problem:
        # A lockout notice, when this failure locked the account.
        accounts.outbox.send_after_response(background, settings)
        errors = FormErrors.from_problem(problem, ["email", "password"], labels={"email": "Email"})
        return render(
            request,
            "auth/login.html",
            {"email": email, "next": target, "errors": errors},
            status_code=problem.status if problem.status in (401, 422, 429) else 400,
            headers=problem.headers if problem.status == 429 else None,
        )
    start_session(request, signed_in.tokens)
    return redirect(target, request)


# --- sign up ----------------------------------------------------------------------------


@router.get("/signup")
async def signup_page(request: Request, auth: MaybeUser) -> Response:
    if auth is not None:
        return redirect(HOME, request)
    return render(request, "auth/signup.html", {"values": {}, "errors": FormErrors()})


@router.post("/signup")
async def signup(
    request: Request, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    form = await request.form()
    values = {"email": text(form, "email").strip(), "company_name": text(form, "company_name")}
    try:
        # A savepoint: a refused change leaves nothing behind, even in memory.
        async with session.begin_nested():
            await rate_limit(request, "sign_up")
            body = parse(RegisterRequest, {**values, "password": text(form, "password")})
            signed_in = await accounts_of(request, session, settings, origin).register(body)
    except Problem as problem:
        errors = FormErrors.from_problem(
            problem,
            ["email", "password", "company_name"],
            labels={"email": "Email", "company_name": "Company name"},
        )
        return render(
            request,
            "auth/signup.html",
            {"values": values, "errors": errors, "conflict": problem.status == 409},
            status_code=problem.status if problem.status in (409, 422, 429) else 400,
            headers=problem.headers if problem.status == 429 else None,
        )
    start_session(request, signed_in.tokens)
    flash(request, "welcome")
    # A new company's first step: a gateway (the welcome notice says so).
    return redirect("/gateways", request)


# --- sign out ---------------------------------------------------------------------------


@router.post("/logout")
async def logout(
    request: Request, auth: MaybeUser, session: SessionDep, settings: SettingsDep, origin: OriginDep
) -> Response:
    if auth is not None:
        await accounts_of(request, session, settings, origin).logout(auth)
    end_session(request)
    flash(request, "signed_out")
    return redirect("/login", request)


# --- invitations --------------------------------------------------------------------------


async def _invitation_view(session: SessionDep, token: str) -> dict[str, str] | None:
    """Who is invited where, and whether they already have a password to enter."""
    invitation = await invitation_by_token(session, token_digest(token), utcnow())
    if invitation is None:
        return None
    users = UserRepository(session)
    company = await users.company(invitation.company_id)
    existing = await users.by_email(invitation.email)
    return {
        "email": invitation.email,
        "role": invitation.role,
        "company": company.name if company else "",
        "mode": "existing" if existing else "new",
    }


def _invalid_invitation() -> Problem:
    return Problem(
        404,
        "not-found",
        "Invitation not found",
        "This invitation link is invalid, has expired, or was already used. "
        "Ask for a new invitation.",
    )


@router.get("/invite/{token}")
async def invitation_page(request: Request, token: str, session: SessionDep) -> Response:
    view = await _invitation_view(session, token)
    if view is None:
        raise _invalid_invitation()
    return render(
        request, "auth/invite.html", {"invite": view, "token": token, "errors": FormErrors()}
    )


@router.post("/invite/{token}")
async def accept_invitation(
    request: Request,
    token: str,
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
            await rate_limit(request, "sign_in", account=token)
            body = parse(AcceptInvitation, {"token": token, "password": text(form, "password")})
            signed_in = await MemberService(accounts).accept_invitation(
                body.token, body.password, database
            )
    except Problem as problem:
        # A lockout notice, when this wrong password locked the account.
        accounts.outbox.send_after_response(background, settings)
        view = await _invitation_view(session, token)
        if view is None:
            raise _invalid_invitation() from None
        errors = FormErrors.from_problem(problem, ["password"])
        if problem.slug == "invalid-credentials":
            errors = FormErrors(fields={"password": ["The password is wrong."]})
        return render(
            request,
            "auth/invite.html",
            {"invite": view, "token": token, "errors": errors},
            status_code=422,
        )
    start_session(request, signed_in.tokens)
    flash(request, "joined")
    return redirect(HOME, request)


# --- forgotten password -------------------------------------------------------------------


@router.get("/forgot-password")
async def forgot_password_page(request: Request) -> Response:
    return render(request, "auth/forgot_password.html", {"email": "", "errors": FormErrors()})


@router.post("/forgot-password")
async def forgot_password(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
    background: BackgroundTasks,
) -> Response:
    form = await request.form()
    email = text(form, "email").strip()
    accounts = accounts_of(request, session, settings, origin)
    try:
        async with session.begin_nested():
            body = parse(PasswordResetRequest, {"email": email})
            await rate_limit(request, "password_reset", account=body.email)
            await PasswordService(accounts).request_reset(body.email)
    except Problem as problem:
        errors = FormErrors.from_problem(problem, ["email"], labels={"email": "Email"})
        return render(
            request,
            "auth/forgot_password.html",
            {"email": email, "errors": errors},
            status_code=problem.status if problem.status in (422, 429) else 400,
            headers=problem.headers if problem.status == 429 else None,
        )
    accounts.outbox.send_after_response(background, settings)
    # The same page whether or not the address has an account.
    return render(request, "auth/reset_sent.html", {"email": email})


def _invalid_reset_page(request: Request) -> Response:
    return render(request, "auth/reset_invalid.html", {}, status_code=INVALID_RESET.status)


@router.get("/reset-password")
async def reset_password_page(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
    token: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    user = await PasswordService(accounts_of(request, session, settings, origin)).reset_target(
        token
    )
    if user is None:
        return _invalid_reset_page(request)
    return render(
        request,
        "auth/reset_password.html",
        {"token": token, "email": user.email, "errors": FormErrors()},
    )


@router.post("/reset-password")
async def reset_password(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    origin: OriginDep,
    background: BackgroundTasks,
) -> Response:
    form = await request.form()
    token = text(form, "token")
    accounts = accounts_of(request, session, settings, origin)
    passwords = PasswordService(accounts)
    try:
        async with session.begin_nested():
            body = parse(
                PasswordResetConfirm,
                {"token": token, "new_password": text(form, "new_password")},
            )
            await passwords.confirm_reset(body.token, body.new_password)
    except Problem as problem:
        if problem.status >= 500:
            # Not the link's fault (the revocation list is unavailable): it still works.
            raise
        user = await passwords.reset_target(token) if problem.status == 422 else None
        if user is None:
            return _invalid_reset_page(request)
        errors = FormErrors.from_problem(problem, ["new_password"])
        return render(
            request,
            "auth/reset_password.html",
            {"token": token, "email": user.email, "errors": errors},
            status_code=422,
        )
    accounts.outbox.send_after_response(background, settings)
    # Every session ended, this browser's too: sign in with the new password.
    end_session(request)
    flash(request, "password_reset")
    return redirect("/login", request)
