"""Writing the audit log: who did what to which object, when, from where, and how it went."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.kit.deps import Origin
from paygate.kit.ids import new_id
from paygate.security.models import AuditEntry

CHANGED = "[changed]"  # stands in for a secret value in a diff


@dataclass(frozen=True)
class Actor:
    type: str  # user, api_key, system, anonymous
    id: str | None
    label: str | None


SYSTEM = Actor("system", None, "paygate")


def diff(
    before: dict[str, Any], after: dict[str, Any], *, secret_keys: Iterable[str] = ()
) -> dict[str, Any]:
    """Fields that differ, as {field: {"before": ..., "after": ...}}; nested dicts by dotted path.

    A secret field that changed shows only the CHANGED marker on both sides.
    """
    secrets = set(secret_keys)
    changes: dict[str, Any] = {}

    def walk(path: str, old: Any, new: Any) -> None:
        if isinstance(old, dict) and isinstance(new, dict) and path not in secrets:
            for key in sorted(set(old) | set(new)):
                walk(f"{path}.{key}" if path else key, old.get(key), new.get(key))
        elif old != new:
            if path in secrets:
                changes[path] = {
                    "before": CHANGED if old is not None else None,
                    "after": CHANGED if new is not None else None,
                }
            else:
                changes[path] = {"before": old, "after": new}

    walk("", before, after)
    return changes


async def record(
    session: AsyncSession,
    *,
    company_id: str | None,
    actor: Actor,
    origin: Origin | None,
    action: str,
    object_type: str | None = None,
    object_id: str | None = None,
    outcome: str = "success",
    changes: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        id=new_id("aud"),
        company_id=company_id,
        actor_type=actor.type,
        actor_id=actor.id,
        actor_label=actor.label,
        action=action,
        object_type=object_type,
        object_id=object_id,
        outcome=outcome,
        ip=origin.ip if origin else None,
        user_agent=origin.user_agent if origin else None,
        request_id=origin.request_id if origin else None,
        changes=changes or None,
        detail=detail,
    )
    session.add(entry)
    await session.flush()
    return entry


async def record_detached(database: Database, **fields: Any) -> None:
    """Record in a transaction of its own: for failures whose request is rolled back."""
    async with database.transaction() as session:
        await record(session, **fields)
