"""API shapes of the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel


class AuditEntryOut(BaseModel):
    id: str
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    action: str
    object_type: str | None
    object_id: str | None
    outcome: str
    ip: str | None
    user_agent: str | None
    request_id: str | None
    changes: dict[str, Any] | None
    detail: str | None


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    has_more: bool
    next_cursor: str | None
