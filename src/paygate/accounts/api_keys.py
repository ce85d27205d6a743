"""A company's API keys: created (never with more scopes than their maker holds), rotated
with a grace period for the old key, and revoked."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from paygate.accounts.auth import API_KEY_PREFIX, AuthContext
from paygate.accounts.models import ApiKey
from paygate.accounts.repository import ApiKeyRepository
from paygate.accounts.schemas import (
    MAX_API_KEY_LIFETIME_DAYS,
    MAX_ROTATION_GRACE_HOURS,
    ApiKeyCreate,
)
from paygate.accounts.service import AccountService
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, conflict, forbidden, validation_failed
from paygate.kit.ids import new_id
from paygate.security import audit
from paygate.security.tokens import new_opaque_token, token_digest


class ApiKeyService:
    """API keys of the caller's company; every change is audited."""

    def __init__(self, accounts: AccountService) -> None:
        self.session = accounts.session
        self.origin = accounts.origin

    async def create_api_key(self, auth: AuthContext, request: ApiKeyCreate) -> tuple[ApiKey, str]:
        scopes = set(request.scopes)
        # A key can never do more than the person who made it.
        beyond = sorted(scope.value for scope in scopes - auth.permissions)
        if beyond:
            raise forbidden(f"You cannot grant scopes you do not hold: {', '.join(beyond)}.")
        now = utcnow()
        expires_at = request.expires_at
        if request.expires_in_days is not None:
            expires_at = now + timedelta(days=request.expires_in_days)
        if expires_at is not None:
            if expires_at <= now:
                raise validation_failed([FieldError("expires_at", "must be in the future")])
            if expires_at > now + timedelta(days=MAX_API_KEY_LIFETIME_DAYS):
                raise validation_failed(
                    [FieldError("expires_at", "must be at most two years (730 days) ahead")]
                )
        return await self._issue_api_key(
            auth, name=request.name, scopes=sorted(s.value for s in scopes), expires_at=expires_at
        )

    async def _issue_api_key(
        self,
        auth: AuthContext,
        *,
        name: str,
        scopes: list[str],
        expires_at: datetime | None,
        rotated_from: str | None = None,
    ) -> tuple[ApiKey, str]:
        key = new_opaque_token(API_KEY_PREFIX.rstrip("_"))
        api_key = await ApiKeyRepository(self.session, auth.company_id).add(
            ApiKey(
                id=new_id("key"),
                company_id=auth.company_id,
                name=name,
                prefix=key[: len(API_KEY_PREFIX) + 8],
                key_hash=token_digest(key),
                scopes=scopes,
                created_by=auth.user_id,
                expires_at=expires_at,
                rotated_from=rotated_from,
            )
        )
        changes: dict[str, Any] = {
            "name": {"before": None, "after": api_key.name},
            "scopes": {"before": None, "after": api_key.scopes},
            "expires_at": {"before": None, "after": _iso(expires_at)},
        }
        if rotated_from is not None:
            changes["rotated_from"] = {"before": None, "after": rotated_from}
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="api_key.created",
            object_type="api_key",
            object_id=api_key.id,
            object_name=api_key.name,
            changes=changes,
        )
        return api_key, key

    async def rotate_api_key(
        self, auth: AuthContext, key_id: str, grace_period_hours: int
    ) -> tuple[ApiKey, str, ApiKey]:
        """Issue a replacement with the same name, scopes and lifetime; the old key works on
        for the grace period only. Returns the new key, its secret and the old key."""
        if not 0 <= grace_period_hours <= MAX_ROTATION_GRACE_HOURS:
            raise validation_failed(
                [FieldError("grace_period_hours", "must be between 0 and 168 (7 days)")]
            )
        old = await ApiKeyRepository(self.session, auth.company_id).get(key_id, for_update=True)
        now = utcnow()
        # The caller gets the new secret: like creating a key, rotating one never hands out
        # scopes the caller does not hold now (another member's key, or a demoted creator's).
        beyond = sorted(set(old.scopes) - {p.value for p in auth.permissions})
        if beyond:
            raise forbidden(
                "You cannot rotate a key with scopes you do not hold: "
                f"{', '.join(beyond)}. Ask someone who holds them."
            )
        if old.revoked_at is not None:
            raise conflict("This key is revoked, so it cannot be rotated. Create a new key.")
        if old.replaced_by is not None:
            raise conflict(
                f"This key was already rotated; rotate its replacement {old.replaced_by} instead."
            )
        if old.expires_at is not None and old.expires_at <= now:
            raise conflict("This key has expired, so it cannot be rotated. Create a new key.")
        # Same expiry policy: a key that lived N days is replaced by one that lives N days.
        lifetime = old.expires_at - old.created_at if old.expires_at is not None else None
        new, secret = await self._issue_api_key(
            auth,
            name=old.name,
            scopes=list(old.scopes),
            expires_at=now + lifetime if lifetime is not None else None,
            rotated_from=old.id,
        )
        before = old.expires_at
        grace_end = now + timedelta(hours=grace_period_hours)
        old.expires_at = min(before, grace_end) if before is not None else grace_end
        old.replaced_by = new.id
        await self.session.flush()
        await audit.record(
            self.session,
            company_id=auth.company_id,
            actor=auth.actor,
            origin=self.origin,
            action="api_key.rotated",
            object_type="api_key",
            object_id=old.id,
            object_name=old.name,
            changes={
                "expires_at": {"before": _iso(before), "after": _iso(old.expires_at)},
                "replaced_by": {"before": None, "after": new.id},
            },
            detail=f"grace period {grace_period_hours} h",
        )
        return new, secret, old

    async def revoke_api_key(self, auth: AuthContext, key_id: str) -> ApiKey:
        api_key = await ApiKeyRepository(self.session, auth.company_id).get(key_id, for_update=True)
        if api_key.revoked_at is None:
            api_key.revoked_at = utcnow()
            await audit.record(
                self.session,
                company_id=auth.company_id,
                actor=auth.actor,
                origin=self.origin,
                action="api_key.revoked",
                object_type="api_key",
                object_id=api_key.id,
                object_name=api_key.name,
            )
        return api_key


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
