"""The security API: the audit log (read and filter; there is no way to edit or delete an
entry) and master key re-wraps (an owner starts one for the company and follows it)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import KeyringDep, SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.ids import ObjectId
from paygate.kit.pagination import PageParams, page_params
from paygate.security.key_rotation import KeyRotationService
from paygate.security.models import KeyRotation
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.security.schemas import (
    AuditEntryOut,
    AuditPage,
    KeyRotationOut,
    KeysOut,
    KeyUsageOut,
)

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=PROBLEM_RESPONSES)
keys_router = APIRouter(prefix="/api/v1/security", tags=["security"], responses=PROBLEM_RESPONSES)

Short = Annotated[str | None, Query(max_length=60)]


def audit_filters(
    object_type: Short = None,
    object_id: Short = None,
    actor_id: Short = None,
    action: Short = None,
    since: Annotated[datetime | None, Query(description="From this time (inclusive)")] = None,
    until: Annotated[datetime | None, Query(description="Before this time")] = None,
) -> AuditFilters:
    return AuditFilters(object_type, object_id, actor_id, action, since, until)


@router.get("/audit-log", response_model=AuditPage)
async def list_audit_log(
    auth: Annotated[AuthContext, Depends(require(Permission.AUDIT_READ))],
    session: SessionDep,
    filters: Annotated[AuditFilters, Depends(audit_filters)],
    paging: Annotated[PageParams, Depends(page_params)],
) -> AuditPage:
    rows, cursor = await AuditRepository(session, auth.company_id).search(filters, paging)
    return AuditPage(
        data=[AuditEntryOut.model_validate(row, from_attributes=True) for row in rows],
        has_more=cursor is not None,
        next_cursor=cursor,
    )


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


@keys_router.get("/keys", response_model=KeysOut)
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


@keys_router.post(
    "/key-rotations", status_code=status.HTTP_202_ACCEPTED, response_model=KeyRotationOut
)
async def start_key_rotation(rotations: Rotator) -> KeyRotationOut:
    """Re-wrap the company's data keys under the primary master key, as a background job."""
    return rotation_out(await rotations.start())


@keys_router.get("/key-rotations/{rotation_id}", response_model=KeyRotationOut)
async def get_key_rotation(rotation_id: ObjectId, rotations: Reader) -> KeyRotationOut:
    return rotation_out(await rotations.get(rotation_id))
