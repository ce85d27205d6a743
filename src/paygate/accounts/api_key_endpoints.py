"""The API keys JSON API: list, create (the key shown once), rotate, revoke."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Body, Depends, Response, status

from paygate.accounts.api_keys import ApiKeyService
from paygate.accounts.auth import AuthContext, require
from paygate.accounts.endpoints import Accounts
from paygate.accounts.models import ApiKey
from paygate.accounts.permissions import Permission
from paygate.accounts.repository import ApiKeyRepository
from paygate.accounts.schemas import (
    ApiKeyCreate,
    ApiKeyCreated,
    ApiKeyOut,
    ApiKeyRotate,
    ApiKeyRotated,
)
from paygate.kit.deps import SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId

router = APIRouter(prefix="/api/v1", tags=["accounts"], responses=PROBLEM_RESPONSES)


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
