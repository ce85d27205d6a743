"""The accounts JSON API: sign-up, sign-in, passwords, refresh, sign-out, accepting an
invitation, me, roles and the company's settings. Members and invitations are in
member_endpoints.py, sign-in sessions in session_endpoints.py, API keys in
api_key_endpoints.py; they share the `Accounts` dependency defined here."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from paygate.accounts.auth import AuthContext, Authenticated, RevocationsDep, require
from paygate.accounts.members import MemberService
from paygate.accounts.models import Company
from paygate.accounts.passwords import RESET_REQUESTED, PasswordService
from paygate.accounts.permissions import Permission, Role, permissions_of
from paygate.accounts.schemas import (
    Accepted,
    AcceptInvitation,
    CompanyOut,
    EmbedOrigins,
    LoginRequest,
    MembershipSummary,
    MeOut,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    TokenPair,
    UserOut,
)
from paygate.accounts.service import AccountService
from paygate.kit.deps import DatabaseDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES, Problem, not_found
from paygate.security import audit
from paygate.security.rate_limits import limited, rate_limit

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


def account_service(
    session: SessionDep, settings: SettingsDep, origin: OriginDep, revocations: RevocationsDep
) -> AccountService:
    return AccountService(session, settings, origin, revocations=revocations)


Accounts = Annotated[AccountService, Depends(account_service)]


@router.post(
    "/auth/register",
    status_code=status.HTTP_201_CREATED,
    response_model=TokenPair,
    dependencies=[Depends(limited("sign_up"))],
)
async def register(body: RegisterRequest, accounts: Accounts) -> TokenPair:
    return (await accounts.register(body)).tokens


@router.post("/auth/login", response_model=TokenPair)
async def login(
    body: LoginRequest,
    request: Request,
    accounts: Accounts,
    database: DatabaseDep,
    settings: SettingsDep,
) -> TokenPair | JSONResponse:
    await rate_limit(request, "sign_in", account=body.email)
    try:
        signed_in = await accounts.login(body.email, body.password, body.company_id, database)
    except Problem as problem:
        if not accounts.outbox.messages:
            raise
        # This failure locked the account: answer the refusal and still send the notices
        # (the attempt and the lock were committed in a transaction of their own).
        return accounts.outbox.problem_response(problem, request, settings)
    return signed_in.tokens


# --- passwords -------------------------------------------------------------------------


@router.post("/me/password", status_code=status.HTTP_204_NO_CONTENT)
async def change_password(
    body: PasswordChange,
    request: Request,
    auth: Authenticated,
    accounts: Accounts,
    database: DatabaseDep,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    """Change your own password (people only, not API keys); your other sessions end."""
    # Checking the current password is a sign-in attempt: it shares sign-in's limits.
    await rate_limit(request, "sign_in", account=auth.actor_id)
    try:
        await PasswordService(accounts).change(
            auth, body.current_password, body.new_password, database
        )
    except Problem as problem:
        if not accounts.outbox.messages:
            raise
        return accounts.outbox.problem_response(problem, request, settings)
    accounts.outbox.send_after_response(background, settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/password-reset", status_code=status.HTTP_202_ACCEPTED, response_model=Accepted)
async def request_password_reset(
    body: PasswordResetRequest,
    request: Request,
    accounts: Accounts,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Accepted:
    """Email a one-time reset link. The answer is the same whether or not the account exists."""
    await rate_limit(request, "password_reset", account=body.email)
    await PasswordService(accounts).request_reset(body.email)
    accounts.outbox.send_after_response(background, settings)
    return Accepted(detail=RESET_REQUESTED)


@router.post("/auth/password-reset/confirm", status_code=status.HTTP_204_NO_CONTENT)
async def confirm_password_reset(
    body: PasswordResetConfirm,
    accounts: Accounts,
    settings: SettingsDep,
    background: BackgroundTasks,
) -> Response:
    """Set a new password with the emailed token; every session of the account ends."""
    await PasswordService(accounts).confirm_reset(body.token, body.new_password)
    accounts.outbox.send_after_response(background, settings)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/auth/refresh", response_model=TokenPair, dependencies=[Depends(limited("refresh"))])
async def refresh(body: RefreshRequest, accounts: Accounts, database: DatabaseDep) -> TokenPair:
    return await accounts.refresh(body.refresh_token, database)


@router.post("/auth/logout", status_code=status.HTTP_204_NO_CONTENT)
async def logout(auth: Authenticated, accounts: Accounts) -> Response:
    await accounts.logout(auth)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/invitations/accept", response_model=TokenPair)
async def accept_invitation(
    body: AcceptInvitation,
    request: Request,
    accounts: Accounts,
    database: DatabaseDep,
    settings: SettingsDep,
) -> TokenPair | JSONResponse:
    # An existing account's password is checked here: sign-in's limits apply.
    await rate_limit(request, "sign_in", account=body.token)
    try:
        signed_in = await MemberService(accounts).accept_invitation(
            body.token, body.password, database
        )
    except Problem as problem:
        if not accounts.outbox.messages:
            raise
        # This failure locked the account: still send the lockout notices.
        return accounts.outbox.problem_response(problem, request, settings)
    return signed_in.tokens


@router.get("/me", response_model=MeOut)
async def me(auth: Authenticated, accounts: Accounts) -> MeOut:
    memberships = await accounts.users.memberships(auth.user_id) if auth.user_id else []
    company = await accounts.users.company(auth.company_id)
    if company is None:
        raise not_found("company")
    return MeOut(
        actor_type=auth.actor_type,
        user=UserOut(id=auth.user_id, email=auth.actor_label) if auth.user_id else None,
        company=CompanyOut(id=company.id, name=company.name),
        role=auth.role,
        permissions=sorted(auth.permissions, key=lambda p: p.value),
        memberships=[
            MembershipSummary(company_id=c.id, company_name=c.name, role=Role(m.role))
            for m, c in memberships
        ],
    )


@router.get("/roles")
async def roles(auth: Authenticated) -> dict[str, list[str]]:
    """What each role may do (its permissions are also the API key scopes)."""
    return {role.value: [p.value for p in permissions_of(role)] for role in Role}


@router.put("/company/embed-origins", response_model=EmbedOrigins)
async def set_embed_origins(
    body: EmbedOrigins,
    auth: Annotated[AuthContext, Depends(require(Permission.COMPANY_WRITE))],
    session: SessionDep,
) -> EmbedOrigins:
    """The origins whose pages may frame this company's payment pages (company:write, which
    only owners hold, and keys they made with that scope)."""
    company = await session.get(Company, auth.company_id, with_for_update=True)
    if company is None:
        raise not_found("company")
    before = list(company.embed_origins or [])
    company.embed_origins = body.origins or None
    await audit.record_by(
        session,
        auth,
        action="company.embed_origins_changed",
        object_type="company",
        object_id=company.id,
        object_name=company.name,
        changes={"embed_origins": {"before": before, "after": body.origins}},
    )
    return EmbedOrigins(origins=body.origins)
