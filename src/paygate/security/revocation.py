"""The token revocation list: access tokens refused before they expire.

Access tokens are short-lived JWTs, checked without a session lookup. To end one early it
goes on this list, under one of two identifiers:

- its `jti`: that one token is signed out;
- its session id (`sid`): every access token issued in that sign-in session.

An entry is kept only until the last access token it covers would have expired anyway
(`until`, at most now + access_token_ttl_seconds plus a little slack), so the list stays
small. Every process checks it on every request (`is_revoked`).

Where it lives (docs/decisions.md, "Token revocation list"):
- writes always go to PostgreSQL (`revoked_tokens`, in the caller's transaction, so the
  entry commits with the change that caused it) and, when `redis_url` is set, to Redis too
  (`SET <prefix>:<identifier> 1 PXAT <until>`);
- reads go to Redis when it is configured (one `EXISTS` round trip for jti and sid),
  to PostgreSQL otherwise, and to PostgreSQL when Redis fails.

One `RevocationList` (and its Redis client) lives on `app.state.revocations`; the app's
lifespan closes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import bindparam, delete, exists, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.kit.errors import Problem
from paygate.security.models import RevokedToken
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

# Added to a session's revocation: covers a refresh that read the session just before it was
# ended and issued its token just after, and small clock differences between processes.
REVOCATION_SLACK = timedelta(seconds=60)


class RevocationUnavailable(Problem):
    """Redis did not take a revocation: the change that needed it is refused and rolled back.

    A 503 the caller can retry, not a bare 500: nothing was changed, so nothing is half done.
    """

    def __init__(self) -> None:
        super().__init__(
            503,
            "revocation-unavailable",
            "Service unavailable",
            "paygate could not end the session on every server just now, so nothing was "
            "changed. Try again in a minute.",
            headers={"Retry-After": "30"},
        )


class RevocationList:
    def __init__(self, settings: Settings, redis: Redis | None = None) -> None:
        self.access_token_ttl = timedelta(seconds=settings.access_token_ttl_seconds)
        self.key_prefix = settings.revocation_key_prefix
        self.redis = redis

    @classmethod
    def from_settings(cls, settings: Settings) -> RevocationList:
        """A list with its own Redis client when `redis_url` is set (no connection yet)."""
        if not settings.redis_url:
            return cls(settings)
        # Named after the key prefix, so `CLIENT LIST` shows whose connections these are.
        return cls(
            settings, Redis.from_url(settings.redis_url, client_name=settings.revocation_key_prefix)
        )

    async def close(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()

    def key(self, identifier: str) -> str:
        return f"{self.key_prefix}:{identifier}"

    def session_until(self) -> datetime:
        """How long a session's entry must last: past every access token issued in it."""
        return utcnow() + self.access_token_ttl + REVOCATION_SLACK

    async def revoke(self, session: AsyncSession, identifier: str, until: datetime) -> None:
        """Refuse tokens with this jti or sid until `until`."""
        await self.revoke_all(session, [identifier], until)

    async def revoke_all(
        self, session: AsyncSession, identifiers: Sequence[str], until: datetime
    ) -> None:
        if not identifiers or until <= utcnow():
            return
        unique = sorted(set(identifiers))
        statement = insert(RevokedToken).values(
            [{"identifier": identifier, "expires_at": until} for identifier in unique]
        )
        await session.execute(
            statement.on_conflict_do_update(
                index_elements=[RevokedToken.identifier],
                set_={
                    "expires_at": func.greatest(
                        RevokedToken.expires_at, statement.excluded.expires_at
                    )
                },
            )
        )
        if self.redis is None:
            return
        # Written before the transaction commits: should it roll back, a token is refused
        # a few minutes early, never accepted late. A Redis failure fails the request (and
        # rolls back the change), so no process that reads Redis can miss a revocation.
        at_ms = int(until.timestamp() * 1000)
        try:
            async with self.redis.pipeline(transaction=False) as pipe:
                for identifier in unique:
                    # A repeat revocation always comes later with a later `until`: plain SET.
                    pipe.set(self.key(identifier), b"1", pxat=at_ms)
                await pipe.execute()
        except RedisError as error:
            logger.exception("revocation_redis_write_failed")
            raise RevocationUnavailable from error

    @property
    def answers_alone(self) -> bool:
        """True when Redis answers `is_revoked`; False when PostgreSQL does (and a caller
        may fold `REVOKED_IN_DATABASE` into a statement it makes anyway)."""
        return self.redis is not None

    async def is_revoked(self, session: AsyncSession, jti: str, sid: str | None) -> bool:
        if self.redis is not None:
            try:
                identifiers = [jti] if sid is None else [jti, sid]
                found = await self.redis.exists(*(self.key(i) for i in identifiers))
                return bool(found)
            except RedisError:
                # PostgreSQL holds every entry too: slower, never wrong.
                logger.exception("revocation_redis_failed")
        statement = select(REVOKED_IN_DATABASE)
        return bool((await session.execute(statement, revoked_params(jti, sid))).scalar())


# Whether a token (`jti`) or its session (`sid`, may be None) is on the list, as an
# expression a statement may fold in; its parameters come from `revoked_params`.
REVOKED_IN_DATABASE = exists().where(
    RevokedToken.identifier.in_([bindparam("jti"), bindparam("sid")]),
    RevokedToken.expires_at > bindparam("revoked_after"),
)


def revoked_params(jti: str, sid: str | None) -> dict[str, object]:
    return {"jti": jti, "sid": sid, "revoked_after": utcnow()}


async def purge_expired(session: AsyncSession) -> int:
    """Delete the PostgreSQL entries no token can need any more; how many went."""
    result = await session.execute(delete(RevokedToken).where(RevokedToken.expires_at <= utcnow()))
    return int(getattr(result, "rowcount", 0) or 0)
