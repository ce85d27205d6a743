"""Rate limits per IP and per account, over Redis when configured and in memory otherwise.

One `RateLimits` lives on `app.state.rate_limits`, built from settings at start (a bad limit
string fails the start, not a request). A route limits itself in one line, either

    dependencies=[Depends(limited("webhook"))]                    # per IP only, or
    await rate_limit(request, "password_reset", account=email)    # per IP and per account

where the bucket names the settings `rate_limit_<bucket>_ip` / `rate_limit_<bucket>_account`.
Over the limit the answer is 429 `rate-limited` with Retry-After.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Awaitable, Callable

import structlog
from fastapi import Request
from limits import RateLimitItem, parse_many
from limits.aio.storage import MemoryStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.storage import storage_from_string

from paygate.kit.errors import Problem
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

SCOPES = ("ip", "account")


def rate_limited(retry_after: int) -> Problem:
    return Problem(
        429,
        "rate-limited",
        "Too many requests",
        f"Too many attempts. Try again in {retry_after} seconds.",
        headers={"Retry-After": str(retry_after)},
    )


def _storage(settings: Settings) -> Storage:
    if not settings.redis_url:
        return MemoryStorage()
    url = settings.redis_url
    if not url.startswith("async+"):
        url = "async+" + url
    # redis-py is paygate's Redis client already (limits defaults to coredis).
    storage = storage_from_string(
        url, key_prefix=settings.rate_limit_key_prefix, implementation="redispy"
    )
    assert isinstance(storage, Storage)
    return storage


class RateLimits:
    def __init__(self, settings: Settings, storage: Storage | None = None) -> None:
        self.storage = storage or _storage(settings)
        self.limiter = MovingWindowRateLimiter(self.storage)
        self.items: dict[tuple[str, str], list[RateLimitItem]] = {}
        prefix = "rate_limit_"
        for name in type(settings).model_fields:
            if not name.startswith(prefix) or name == "rate_limit_key_prefix":
                continue
            bucket, _, scope = name[len(prefix) :].rpartition("_")
            if scope not in SCOPES:
                raise ValueError(f"{name}: a rate limit setting ends in _ip or _account")
            value = str(getattr(settings, name)).strip()
            try:
                self.items[(bucket, scope)] = parse_many(value) if value else []
            except ValueError as error:
                raise ValueError(f"PAYGATE_{name.upper()}: {error}") from error

    def buckets(self) -> set[str]:
        return {bucket for bucket, _ in self.items}

    async def hit(self, bucket: str, *, ip: str | None, account: str | None = None) -> None:
        """Count one request; raise 429 when any limit of the bucket is exceeded."""
        if bucket not in self.buckets():
            raise KeyError(f"no rate limit settings for bucket {bucket!r}")
        keys = {"ip": ip, "account": _account_key(account) if account else None}
        for scope, key in keys.items():
            if key is None:
                continue
            for item in self.items.get((bucket, scope), []):
                try:
                    allowed = await self.limiter.hit(item, bucket, scope, key)
                    if allowed:
                        continue
                    stats = await self.limiter.get_window_stats(item, bucket, scope, key)
                except Exception:
                    # Redis down: fail open (sign-in still has the lockout in PostgreSQL;
                    # customers can still pay) and say so loudly.
                    logger.exception("rate_limit_storage_failed", bucket=bucket)
                    return
                retry_after = max(1, math.ceil(stats.reset_time - time.time()))
                logger.info("rate_limited", bucket=bucket, scope=scope, retry_after=retry_after)
                raise rate_limited(retry_after)

    async def reset(self) -> None:
        await self.storage.reset()


def _account_key(account: str) -> str:
    # Accounts are emails or tokens: keep neither in Redis, only a digest.
    return hashlib.sha256(account.strip().lower().encode()).hexdigest()[:32]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def rate_limit(request: Request, bucket: str, *, account: str | None = None) -> None:
    """Count this request against `bucket` for its IP (and `account`, when given)."""
    limits: RateLimits = request.app.state.rate_limits
    await limits.hit(bucket, ip=client_ip(request), account=account)


def limited(bucket: str) -> Callable[[Request], Awaitable[None]]:
    """A route dependency limiting `bucket` per IP."""

    async def dependency(request: Request) -> None:
        await rate_limit(request, bucket)

    return dependency
