"""Who is calling: bearer tokens (access JWTs or API keys) resolved to an auth context."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy import bindparam, false, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.models import ApiKey, Membership, User
from paygate.accounts.permissions import ROLE_PERMISSIONS, Permission, Role
from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.deps import DatabaseDep, Origin, OriginDep, SettingsDep
from paygate.kit.errors import forbidden, unauthorized
from paygate.kit.sql import HotStatement, run
from paygate.security.audit import Actor, record_detached
from paygate.security.revocation import REVOKED_IN_DATABASE, RevocationList, revoked_params
from paygate.security.tokens import read_access_token, token_digest

API_KEY_PREFIX = "pgk_"


@dataclass(frozen=True)
class AuthContext:
    company_id: str
    actor_type: str  # "user" or "api_key"
    actor_id: str
    actor_label: str
    permissions: frozenset[Permission]
    origin: Origin
    role: Role | None = None
    user_id: str | None = None
    session_id: str | None = None
    # The access token's jti and expiry: signing out puts that token on the revocation list.
    token_id: str | None = None
    token_expires_at: datetime | None = None

    @property
    def actor(self) -> Actor:
        return Actor(self.actor_type, self.actor_id, self.actor_label)

    def can(self, permission: Permission) -> bool:
        return permission in self.permissions


# Every request reads one of these: the role (with the revocation list when PostgreSQL
# holds it) or the API key's columns (not the entity: nothing changes it here).
_ROLE_OF = (
    select(Membership.role, User.email)
    .join(User, User.id == Membership.user_id)
    .where(
        Membership.company_id == bindparam("company_id"),
        Membership.user_id == bindparam("user_id"),
    )
)
_ROLE = HotStatement(_ROLE_OF.add_columns(false().label("revoked")))
_ROLE_AND_REVOKED = HotStatement(_ROLE_OF.add_columns(REVOKED_IN_DATABASE.label("revoked")))
_API_KEY = HotStatement(
    select(
        ApiKey.id,
        ApiKey.company_id,
        ApiKey.name,
        ApiKey.prefix,
        ApiKey.scopes,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        ApiKey.last_used_at,
    ).where(ApiKey.key_hash == bindparam("key_hash"))
)


async def authenticate_token(
    session: AsyncSession,
    jwt_secret: str,
    token: str,
    origin: Origin,
    revocations: RevocationList,
) -> AuthContext | None:
    """The auth context for a bearer token, or None when it is not (or no longer) valid."""
    if token.startswith(API_KEY_PREFIX):
        return await _authenticate_api_key(session, token, origin)
    claims = read_access_token(jwt_secret, token)
    if claims is None:
        return None
    # Ended sessions and signed-out tokens are on the revocation list until the last token
    # they cover expires (every way a session ends puts it there). Without Redis the list
    # is read in the same statement as the role.
    params: dict[str, object] = {"company_id": claims.company_id, "user_id": claims.user_id}
    if revocations.answers_alone:
        if await revocations.is_revoked(session, claims.jti, claims.session_id):
            return None
        statement = _ROLE
    else:
        statement = _ROLE_AND_REVOKED
        params.update(revoked_params(claims.jti, claims.session_id))
    # The role is read fresh: a role change or removal takes effect at once.
    rows = await run(session, statement, params)
    if not rows or rows[0].revoked:
        return None
    row = rows[0]
    role = Role(row.role)
    return AuthContext(
        company_id=claims.company_id,
        actor_type="user",
        actor_id=claims.user_id,
        actor_label=row.email,
        permissions=ROLE_PERMISSIONS[role],
        origin=origin,
        role=role,
        user_id=claims.user_id,
        session_id=claims.session_id,
        token_id=claims.jti,
        token_expires_at=claims.expires_at,
    )


async def _authenticate_api_key(
    session: AsyncSession, token: str, origin: Origin
) -> AuthContext | None:
    now = utcnow()
    rows = await run(session, _API_KEY, {"key_hash": token_digest(token)})
    key = rows[0] if rows else None
    if key is None or key.revoked_at is not None or (key.expires_at and key.expires_at <= now):
        return None
    if key.last_used_at is None or now - key.last_used_at > timedelta(minutes=1):
        await session.execute(update(ApiKey).where(ApiKey.id == key.id).values(last_used_at=now))
    return AuthContext(
        company_id=key.company_id,
        actor_type="api_key",
        actor_id=key.id,
        actor_label=f"API key {key.name} ({key.prefix}...)",
        permissions=frozenset(Permission(scope) for scope in key.scopes),
        origin=origin,
    )


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def revocations_of(request: Request) -> RevocationList:
    """The app's one revocation list (and Redis client), made by create_app."""
    revocations: RevocationList = request.app.state.revocations
    return revocations


async def get_revocations(request: Request) -> RevocationList:
    return revocations_of(request)


RevocationsDep = Annotated[RevocationList, Depends(get_revocations)]


async def authenticate(
    request: Request,
    database: DatabaseDep,
    settings: SettingsDep,
    origin: OriginDep,
    revocations: RevocationsDep,
) -> AuthContext:
    token = bearer_token(request)
    if token is None:
        raise unauthorized()
    # A connection of its own, given back before the endpoint takes one: an endpoint that
    # calls a gateway must not hold two, nor keep one idle in a transaction for the call.
    async with database.autocommit() as session:
        context = await authenticate_token(
            session, settings.jwt_secret.get_secret_value(), token, origin, revocations
        )
    if context is None:
        raise unauthorized("The token is invalid, expired or revoked.")
    return context


Authenticated = Annotated[AuthContext, Depends(authenticate)]


async def check_permission(
    database: Database, request: Request, auth: AuthContext, permission: Permission
) -> None:
    """Refuse with 403 unless `auth` holds `permission`; every refusal is audited, in a
    transaction of its own (the request's rolls back). The API and the pages both use it."""
    if auth.can(permission):
        return
    await record_detached(
        database,
        company_id=auth.company_id,
        actor=auth.actor,
        origin=auth.origin,
        action="authorization.denied",
        object_type="permission",
        object_id=permission.value,
        outcome="denied",
        detail=f"{request.method} {request.url.path}",
    )
    raise forbidden(f"This needs the {permission.value} permission.")


def require(permission: Permission) -> Callable[..., Coroutine[Any, Any, AuthContext]]:
    """A dependency that lets the call through only with `permission`.

    It needs nothing from the request but the bearer token, so FastAPI runs it before it
    reports a bad body or path: a caller without the scope learns nothing about the input.
    Every refusal is audited, in a transaction of its own (the request's rolls back).
    """

    async def check(auth: Authenticated, request: Request, database: DatabaseDep) -> AuthContext:
        await check_permission(database, request, auth, permission)
        return auth

    # Read back by required_permission(): tests find every route's permission this way.
    check.__dict__[_REQUIRED_PERMISSION] = permission
    return check


_REQUIRED_PERMISSION = "required_permission"


def required_permission(dependency: object) -> Permission | None:
    """The permission a dependency made by `require` checks; None for any other callable."""
    permission = getattr(dependency, _REQUIRED_PERMISSION, None)
    return permission if isinstance(permission, Permission) else None
