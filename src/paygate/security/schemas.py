"""API shapes of the audit log and of master key re-wraps."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class AuditEntryOut(BaseModel):
    id: str
    occurred_at: datetime
    actor_type: str
    actor_id: str | None
    actor_label: str | None
    action: str
    object_type: str | None
    object_id: str | None
    object_name: str | None = Field(
        description="The object's name when the entry was written (kept after it is deleted)"
    )
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
