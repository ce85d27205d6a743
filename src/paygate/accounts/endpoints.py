"""The accounts JSON API: auth, me, members, invitations, API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Body, Depends, Request, Response, status
from fastapi.responses import JSONResponse

from paygate.accounts.api_keys import ApiKeyService
from paygate.accounts.auth import AuthContext, Authenticated, RevocationsDep, require
from paygate.accounts.members import MemberService
from paygate.accounts.models import ApiKey, AuthSession, Company, Invitation, User
from paygate.accounts.passwords import RESET_REQUESTED, PasswordService
from paygate.accounts.permissions import Permission, Role, permissions_of
from paygate.accounts.repository import ApiKeyRepository, InvitationRepository, MembershipRepository
from paygate.accounts.schemas import (
    Accepted,
    AcceptInvitation,
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyRotate,
    ApiKeyRotated,
    CompanyOut,
    EmbedOrigins,
    InvitationOut,
    InviteRequest,
    LoginRequest,
    MemberOut,
    MembershipSummary,
    MembersOut,
    MeOut,
    PasswordChange,
    PasswordResetConfirm,
    PasswordResetRequest,
    RefreshRequest,
    RegisterRequest,
    RoleChange,
    SessionOut,
    SessionsEnded,
    TokenPair,
    UserOut,
)
from paygate.accounts.service import AccountService
from paygate.accounts.sessions import SessionService
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import PROBLEM_RESPONSES, Problem, not_found
from paygate.kit.ids import ObjectId
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


# --- members ---------------------------------------------------------------------


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


# --- sign-in sessions ---------------------------------------------------------------


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


# --- API keys ----------------------------------------------------------------------


def api_key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        scopes=[Permission(s) for s in key.scopes],
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        expires_at=key.expires_at,
        revoked_at=key.revoked_at,
        rotated_from=key.rotated_from,
        replaced_by=key.replaced_by,
    )


@router.get("/api-keys", response_model=list[ApiKeyOut])
async def list_api_keys(
    auth: Annotated[AuthContext, Depends(require(Permission.API_KEYS_READ))], session: SessionDep
) -> list[ApiKeyOut]:
    return [api_key_out(k) for k in await ApiKeyRepository(session, auth.company_id).active()]


@router.post("/api-keys", status_code=status.HTTP_201_CREATED, response_model=ApiKeyCreated)
async def create_api_key(
    body: ApiKeyCreate,
    auth: Annotated[AuthContext, Depends(require(Permission.API_KEYS_WRITE))],
    accounts: Accounts,
) -> ApiKeyCreated:
    api_key, key = await ApiKeyService(accounts).create_api_key(auth, body)
    return ApiKeyCreated(**api_key_out(api_key).model_dump(), key=key)


@router.post(
    "/api-keys/{key_id}/rotate", status_code=status.HTTP_201_CREATED, response_model=ApiKeyRotated
)
async def rotate_api_key(
    key_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.API_KEYS_WRITE))],
    accounts: Accounts,
    body: Annotated[ApiKeyRotate | None, Body()] = None,
) -> ApiKeyRotated:
    """Replace a key: the new one is shown once; the old one works until the grace period ends."""
    grace = (body or ApiKeyRotate()).grace_period_hours
    new, key, old = await ApiKeyService(accounts).rotate_api_key(auth, key_id, grace)
    assert old.expires_at is not None
    return ApiKeyRotated(
        **api_key_out(new).model_dump(), key=key, previous_key_expires_at=old.expires_at
    )


@router.delete("/api-keys/{key_id}", status_code=status.HTTP_204_NO_CONTENT)
async def revoke_api_key(
    key_id: ObjectId,
    auth: Annotated[AuthContext, Depends(require(Permission.API_KEYS_WRITE))],
    accounts: Accounts,
) -> Response:
    await ApiKeyService(accounts).revoke_api_key(auth, key_id)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


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
