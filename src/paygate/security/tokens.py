"""Access tokens (short-lived JWTs) and opaque secrets (refresh tokens, invitations)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

import jwt

from paygate.kit.clock import utcnow
from paygate.kit.ids import new_id

ALGORITHM = "HS256"
ISSUER = "paygate"


@dataclass(frozen=True)
class AccessClaims:
    user_id: str
    company_id: str
    session_id: str
    jti: str
    expires_at: datetime


def issue_access_token(
    secret: str, *, user_id: str, company_id: str, session_id: str, ttl_seconds: int
) -> tuple[str, AccessClaims]:
    now = utcnow()
    claims = AccessClaims(
        user_id=user_id,
        company_id=company_id,
        session_id=session_id,
        jti=new_id("jti"),
        expires_at=now + timedelta(seconds=ttl_seconds),
    )
    token = jwt.encode(
        {
            "iss": ISSUER,
            "sub": user_id,
            "cid": company_id,
            "sid": session_id,
            "jti": claims.jti,
            "iat": int(now.timestamp()),
            "exp": int(claims.expires_at.timestamp()),
        },
        secret,
        algorithm=ALGORITHM,
    )
    return token, claims


def read_access_token(secret: str, token: str) -> AccessClaims | None:
    """The claims of a valid, unexpired token, or None."""
    try:
        payload = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "jti"]},
        )
        return AccessClaims(
            user_id=str(payload["sub"]),
            company_id=str(payload["cid"]),
            session_id=str(payload["sid"]),
            jti=str(payload["jti"]),
            expires_at=datetime.fromtimestamp(int(payload["exp"]), tz=utcnow().tzinfo),
        )
    except (jwt.PyJWTError, KeyError, ValueError, TypeError):
        return None


def new_opaque_token(prefix: str) -> str:
    """A random bearer secret: 256 bits, URL-safe."""
    return f"{prefix}_{secrets.token_urlsafe(32)}"


def token_digest(token: str) -> str:
    """How an opaque token is stored: its SHA-256 (the token has 256 bits of entropy)."""
    return hashlib.sha256(token.encode()).hexdigest()


def constant_time_equal(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())
