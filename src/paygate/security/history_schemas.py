"""API shapes of configuration versions, shared by every domain that keeps a history
(routing rule sets, gateways, webhook endpoints; security/history.py)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import Path
from pydantic import BaseModel, Field

from paygate.security.history import ConfigVersion, Restored

VersionNumber = Annotated[int, Path(ge=1, le=2**31 - 1, description="The version's number")]


class ActorOut(BaseModel):
    type: str
    id: str | None
    label: str | None


class VersionOut(BaseModel):
    version: int
    summary: str
    restored_from: int | None
    actor: ActorOut
    created_at: datetime

    @classmethod
    def of(cls, version: ConfigVersion) -> VersionOut:
        return cls(
            version=version.version,
            summary=version.summary,
            restored_from=version.restored_from,
            actor=ActorOut(type=version.actor_type, id=version.actor_id, label=version.actor_label),
            created_at=version.created_at,
        )


class RestoreOut(BaseModel):
    """What a restore answers beside the configuration as it now is."""

    restored: VersionOut = Field(
        description="The version the restore recorded; its restored_from is the one put back"
    )
    kept: list[str] = Field(
        description="What versions never hold (secrets): these were kept as they are now"
    )
    note: str = Field(description="The same in words")

    @staticmethod
    def fields_of(restored: Restored[Any]) -> dict[str, Any]:
        """These fields of a restore, to add to the object's own answer."""
        return {
            "restored": VersionOut.of(restored.version),
            "kept": list(restored.kept),
            "note": restored.note,
        }
