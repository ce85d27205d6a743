"""The key rotation API: an owner starts a re-wrap of the company's data keys and follows it."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, status
from pydantic import BaseModel, Field

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import KeyringDep, SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.security.key_rotation import KeyRotationService
from paygate.security.models import KeyRotation

router = APIRouter(prefix="/api/v1/security", tags=["security"], responses=PROBLEM_RESPONSES)


class KeyRotationOut(BaseModel):
    id: str
    status: str = Field(description="running, finished, or failed")
    target_key_id: str = Field(description="The master key the data keys are re-wrapped under")
    total: int
    done: int
    failed: int
    failed_gateway_ids: list[str] = Field(
        description="Configurations whose credentials could not be decrypted: re-enter them"
    )
    started_by: str
    started_at: datetime
    finished_at: datetime | None
    detail: str | None


class KeyUsageOut(BaseModel):
    key_id: str
    configurations: int
    state: str = Field(description="primary, configured, or missing (cannot be read)")


class KeysOut(BaseModel):
    primary_key_id: str
    keys: list[KeyUsageOut]
    to_rewrap: int
    latest_rotation: KeyRotationOut | None


def rotation_out(rotation: KeyRotation) -> KeyRotationOut:
    return KeyRotationOut(
        id=rotation.id,
        status=rotation.status,
        target_key_id=rotation.target_key_id,
        total=rotation.total,
        done=rotation.done,
        failed=rotation.failed,
        failed_gateway_ids=list(rotation.failed_gateway_ids),
        started_by=rotation.started_by,
        started_at=rotation.started_at,
        finished_at=rotation.finished_at,
        detail=rotation.detail,
    )


def reader(
    auth: Annotated[AuthContext, Depends(require(Permission.GATEWAYS_READ))],
    session: SessionDep,
    keyring: KeyringDep,
) -> KeyRotationService:
    return KeyRotationService(session, keyring, auth)


def rotator(
    auth: Annotated[AuthContext, Depends(require(Permission.KEYS_ROTATE))],
    session: SessionDep,
    keyring: KeyringDep,
) -> KeyRotationService:
    return KeyRotationService(session, keyring, auth)


Reader = Annotated[KeyRotationService, Depends(reader)]
Rotator = Annotated[KeyRotationService, Depends(rotator)]


@router.get("/keys", response_model=KeysOut)
async def keys_overview(rotations: Reader) -> KeysOut:
    """The primary master key, how many of the company's configurations each key wraps."""
    overview = await rotations.overview()
    latest = await rotations.latest()
    return KeysOut(
        primary_key_id=overview.primary_key_id,
        keys=[
            KeyUsageOut(key_id=u.key_id, configurations=u.configurations, state=u.state)
            for u in overview.usage
        ],
        to_rewrap=overview.to_rewrap,
        latest_rotation=rotation_out(latest) if latest else None,
    )


@router.post("/key-rotations", status_code=status.HTTP_202_ACCEPTED, response_model=KeyRotationOut)
async def start_key_rotation(rotations: Rotator) -> KeyRotationOut:
    """Re-wrap the company's data keys under the primary master key, as a background job."""
    return rotation_out(await rotations.start())


@router.get("/key-rotations/{rotation_id}", response_model=KeyRotationOut)
async def get_key_rotation(rotation_id: ObjectId, rotations: Reader) -> KeyRotationOut:
    return rotation_out(await rotations.get(rotation_id))
