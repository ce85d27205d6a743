"""The audit log API: read and filter; there is no way to edit or delete an entry."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query

from paygate.accounts.auth import AuthContext, require
from paygate.accounts.permissions import Permission
from paygate.kit.deps import SessionDep
from paygate.kit.errors import PROBLEM_RESPONSES
from paygate.kit.pagination import PageParams, page_params
from paygate.security.repository import AuditFilters, AuditRepository
from paygate.security.schemas import AuditEntryOut, AuditPage

router = APIRouter(prefix="/api/v1", tags=["audit"], responses=PROBLEM_RESPONSES)

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
