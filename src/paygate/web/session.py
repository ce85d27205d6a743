"""Browser sessions for the pages: token cookies, refresh rotation, CSRF and flash notices.

The pages authenticate exactly like the JSON API (`authenticate_token` on the access
token), but read the tokens from HttpOnly cookies instead of an Authorization header.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated
from urllib.parse import quote, urlsplit

from fastapi import Depends, Request, Response
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import (
    AuthContext,
    authenticate_token,
    check_permission,
    revocations_of,
)
from paygate.accounts.permissions import Permission
from paygate.accounts.repository import UserRepository
from paygate.accounts.schemas import TokenPair
from paygate.accounts.service import AccountService
from paygate.kit.deps import DatabaseDep, Origin, OriginDep, SessionDep, SettingsDep
from paygate.kit.errors import Problem
from paygate.settings import Settings
from paygate.web.navigation import HOME

ACCESS_COOKIE = "pg_access"
REFRESH_COOKIE = "pg_refresh"
CSRF_COOKIE = "pg_csrf"
FLASH_COOKIE = "pg_flash"
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Flash notices are keys, never free text: a cookie cannot inject words into a page.
FLASH_MESSAGES: dict[str, tuple[str, str]] = {
    "welcome": ("success", "Welcome to paygate. Add a gateway to start accepting payments."),
    "signed_in": ("success", "Signed in."),
    "signed_out": ("info", "You are signed out."),
    "joined": ("success", "Invitation accepted: welcome to the team."),
    "payment_approved": ("success", "Payment approved: it counts as paid."),
    "payment_refused": ("info", "Payment refused: it is marked failed."),
    "gateway_created": ("success", "Gateway added."),
    "gateway_saved": ("success", "Gateway saved."),
    "gateway_deleted": ("success", "Gateway deleted."),
    "gateway_archived": ("info", "Gateway archived: payments refer to it, so it was kept."),
    "gateway_enabled": ("success", "Gateway enabled."),
    "gateway_disabled": ("info", "Gateway disabled."),
    "gateway_tested": ("info", "Connection test finished."),
    "gateway_restored": (
        "success",
        "Version restored as a new version. The gateway kept its current credentials.",
    ),
    "webhook_registered": ("info", "Registration with the provider finished: see the card."),
    "webhook_replayed": ("success", "Replay queued: the event is processed again in a moment."),
    "webhook_replay_refused": ("error", "The event could not be replayed: see its status."),
    "webhook_bulk_replay": ("info", "Bulk replay: see its progress below."),
    "api_key_revoked": ("success", "API key revoked."),
    "member_updated": ("success", "Role changed."),
    "member_removed": ("success", "Member removed."),
    "invitation_revoked": ("success", "Invitation revoked."),
    "member_sessions_ended": ("success", "Sessions ended: the member is signed out everywhere."),
    "session_ended": ("success", "Session ended."),
    "other_sessions_ended": ("success", "Every other session ended."),
    "session_expired": ("info", "Your session ended. Sign in again."),
    "password_changed": (
        "success",
        "Password changed. Your other sessions were signed out.",
    ),
    "password_reset": ("success", "Password changed. Sign in with your new password."),
    "member_unlocked": ("success", "Member unlocked: they can sign in again."),
    "key_rotation_started": ("success", "Re-wrap started: it runs in the background."),
    "key_rotation_busy": ("error", "A re-wrap is already running; wait for it to finish."),
    "monitoring_saved": ("success", "Check settings saved."),
    "alert_recipient_added": ("success", "Recipient added."),
    "alert_recipient_saved": ("success", "Alerts saved."),
    "alert_recipient_removed": ("success", "Recipient removed."),
    "routing_rule_saved": ("success", "Rule saved: a new version of the rules is in force."),
    "routing_rule_moved": ("success", "Rule moved: a new version of the rules is in force."),
    "routing_rule_deleted": ("success", "Rule deleted: a new version of the rules is in force."),
    "routing_default_saved": ("success", "Default list saved."),
    "routing_restored": ("success", "Version restored: it is in force as a new version."),
    "retry_policy_saved": ("success", "Retry policy saved."),
}


class LoginRequired(Exception):
    """Raised by a page that needs a signed-in user; answered with a redirect to /login."""


class CsrfRefused(Exception):
    """The form or htmx request did not carry the CSRF token of this browser."""


@dataclass
class CookieChanges:
    """What the response must do to the browser's cookies, decided during the request."""

    tokens: TokenPair | None = None
    clear_session: bool = False
    new_csrf: str | None = None
    flash: str | None = None
    clear_flash: bool = False


def cookie_changes(request: Request) -> CookieChanges:
    changes: CookieChanges | None = getattr(request.state, "cookie_changes", None)
    if changes is None:
        changes = CookieChanges()
        request.state.cookie_changes = changes
    return changes


# --- CSRF (double submit) -------------------------------------------------------------


def csrf_token(request: Request) -> str:
    """This browser's CSRF token: the cookie's value, or a new one the response will set."""
    changes = cookie_changes(request)
    if changes.new_csrf:
        return changes.new_csrf
    current = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(current) <= 100:
        return current
    changes.new_csrf = secrets.token_urlsafe(32)
    return changes.new_csrf


def rotate_csrf(request: Request) -> None:
    """A new token at sign-in and sign-out, so a token planted before cannot be reused."""
    cookie_changes(request).new_csrf = secrets.token_urlsafe(32)


async def verify_csrf(request: Request) -> None:
    """Router dependency: every unsafe request must echo the cookie's token."""
    if request.method in SAFE_METHODS:
        return
    # Browsers say when a request comes from another site: refuse it outright.
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise CsrfRefused
    expected = request.cookies.get(CSRF_COOKIE, "")
    sent = request.headers.get(CSRF_HEADER, "")
    if not sent and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD, "")
        sent = value if isinstance(value, str) else ""
    if not expected or not sent or not hmac.compare_digest(expected.encode(), sent.encode()):
        raise CsrfRefused


# --- sign-in state ------------------------------------------------------------------------


def start_session(request: Request, tokens: TokenPair) -> None:
    changes = cookie_changes(request)
    changes.tokens = tokens
    changes.clear_session = False
    rotate_csrf(request)


def end_session(request: Request) -> None:
    changes = cookie_changes(request)
    changes.tokens = None
    changes.clear_session = True
    rotate_csrf(request)


def flash(request: Request, key: str) -> None:
    cookie_changes(request).flash = key


def take_flash(request: Request) -> tuple[str, str] | None:
    """The notice set by the previous response (shown once)."""
    key = request.cookies.get(FLASH_COOKIE)
    if not key:
        return None
    cookie_changes(request).clear_flash = True
    return FLASH_MESSAGES.get(key)


def apply_cookie_changes(request: Request, response: Response, settings: Settings) -> None:
    changes = cookie_changes(request)
    secure = not settings.development
    if changes.tokens is not None:
        for name, value, max_age in (
            (ACCESS_COOKIE, changes.tokens.access_token, settings.access_token_ttl_seconds),
            (REFRESH_COOKIE, changes.tokens.refresh_token, settings.refresh_token_ttl_seconds),
        ):
            response.set_cookie(
                name, value, max_age=max_age, path="/", httponly=True, secure=secure, samesite="lax"
            )
    elif changes.clear_session:
        for name in (ACCESS_COOKIE, REFRESH_COOKIE):
            response.delete_cookie(name, path="/", httponly=True, secure=secure, samesite="lax")
    if changes.new_csrf:
        response.set_cookie(
            CSRF_COOKIE, changes.new_csrf, path="/", httponly=True, secure=secure, samesite="lax"
        )
    if changes.flash:
        response.set_cookie(
            FLASH_COOKIE,
            changes.flash,
            max_age=60,
            path="/",
            httponly=True,
            secure=secure,
            samesite="lax",
        )
    elif changes.clear_flash:
        response.delete_cookie(FLASH_COOKIE, path="/", httponly=True, secure=secure, samesite="lax")


async def resolve_auth(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    database: DatabaseDep,
    origin: OriginDep,
) -> AuthContext | None:
    """The signed-in user of this browser, rotating the tokens when the access token expired."""
    secret = settings.jwt_secret.get_secret_value()
    revocations = revocations_of(request)
    access = request.cookies.get(ACCESS_COOKIE)
    if access:
        context = await authenticate_token(session, secret, access, origin, revocations)
        # Pages are for people: an API key pasted into the cookie is not a session.
        if context is not None and context.actor_type == "user":
            return await _remember(request, session, context)
    refresh = request.cookies.get(REFRESH_COOKIE)
    if not refresh:
        if access:
            cookie_changes(request).clear_session = True
        return None
    try:
        # Its own transaction: the rotation must stick even if this page then fails.
        async with database.transaction() as own:
            tokens = await AccountService(own, settings, origin, revocations=revocations).refresh(
                refresh, database
            )
    except Problem:
        cookie_changes(request).clear_session = True
        return None
    cookie_changes(request).tokens = tokens
    context = await authenticate_token(session, secret, tokens.access_token, origin, revocations)
    if context is None or context.actor_type != "user":
        return None
    return await _remember(request, session, context)


async def _remember(request: Request, session: AsyncSession, context: AuthContext) -> AuthContext:
    """Keep what the layout shows (and error pages need after a rollback) on the request."""
    company = await UserRepository(session).company(context.company_id)
    request.state.page_auth = context
    request.state.company_name = company.name if company else ""
    return context


async def require_user(
    auth: Annotated[AuthContext | None, Depends(resolve_auth)],
) -> AuthContext:
    if auth is None:
        raise LoginRequired
    return auth


MaybeUser = Annotated[AuthContext | None, Depends(resolve_auth)]
User = Annotated[AuthContext, Depends(require_user)]


def accounts_of(
    request: Request, session: AsyncSession, settings: Settings, origin: Origin
) -> AccountService:
    """The account service a page uses: the request's transaction and the app's revocation
    list, like the JSON endpoints'."""
    return AccountService(session, settings, origin, revocations=revocations_of(request))


async def need(request: Request, auth: AuthContext, permission: Permission) -> None:
    """The same permission the JSON endpoint requires, checked (and a refusal audited)
    before the service runs."""
    await check_permission(request.app.state.database, request, auth, permission)


# The same bound as the `next` query parameter of the sign-in page.
MAX_NEXT_LENGTH = 500


def safe_next(target: str | None, default: str = HOME) -> str:
    """Only a same-site path: never another host, scheme, or a protocol-relative URL."""
    if (
        not target
        or len(target) > MAX_NEXT_LENGTH
        or not target.startswith("/")
        or target.startswith(("//", "/\\"))
    ):
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or any(c in target for c in "\r\n\t\\"):
        return default
    return target


def login_url_for(request: Request) -> str:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method not in SAFE_METHODS or request.headers.get("hx-request"):
        # After signing in, go back to the page, not to a fragment or a form post.
        here = request.headers.get("hx-current-url") or HOME
        here = urlsplit(here).path or HOME
    return f"/login?next={quote(safe_next(here), safe='/')}"
