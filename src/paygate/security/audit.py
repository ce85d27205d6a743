"""Writing the audit log: who did what to which object, when, from where, and how it went.

The log is tamper-evident: PostgreSQL chains each company's entries by hash as they are
written (migration 0004), and `verify_chains` recomputes every link.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.kit.deps import Origin
from paygate.kit.ids import new_id
from paygate.security.audit_actions import AuditAction
from paygate.security.audit_object_types import AuditObjectType
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
    action: AuditAction,
    object_type: AuditObjectType | None = None,
    object_id: str | None = None,
    object_name: str | None = None,
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
        object_name=object_name[:320] if object_name else None,
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


class Caller(Protocol):
    """Who acts, for which company, from where: what a signed-in request carries
    (`accounts.auth.AuthContext`, `payments.context.Caller`)."""

    @property
    def company_id(self) -> str: ...
    @property
    def actor(self) -> Actor: ...
    @property
    def origin(self) -> Origin | None: ...


async def record_by(
    session: AsyncSession,
    caller: Caller,
    *,
    action: AuditAction,
    object_type: AuditObjectType | None = None,
    object_id: str | None = None,
    object_name: str | None = None,
    outcome: str = "success",
    changes: dict[str, Any] | None = None,
    detail: str | None = None,
) -> AuditEntry:
    """`record` what `caller` did in their company."""
    return await record(
        session,
        company_id=caller.company_id,
        actor=caller.actor,
        origin=caller.origin,
        action=action,
        object_type=object_type,
        object_id=object_id,
        object_name=object_name,
        outcome=outcome,
        changes=changes,
        detail=detail,
    )


async def record_detached(database: Database, **fields: Any) -> None:
    """Record in a transaction of its own: for failures whose request is rolled back."""
    async with database.transaction() as session:
        await record(session, **fields)


@dataclass(frozen=True)
class Chain:
    """One company's chain (company_id None: the entries of no company), as verified."""

    company_id: str | None
    entries: int
    head_seq: int
    head_hash: str  # hex; record it elsewhere to detect a later loss of the newest entries


@dataclass(frozen=True)
class BrokenLink:
    """The first entry of a chain that does not follow from the one before it."""

    company_id: str | None
    seq: int
    entry_id: str
    problem: str


@dataclass(frozen=True)
class ChainReport:
    chains: list[Chain]
    broken: list[BrokenLink]

    @property
    def ok(self) -> bool:
        return not self.broken


# Every entry beside what the entry before it in its chain says: the hash recomputed by
# `audit_entry_hash`, the same function the insert trigger uses (one definition of the
# serialization), the position, and the link.
_LINKS = """
    SELECT id, company_id, seq, hash, prev_hash,
           audit_entry_hash(a) AS recomputed,
           lag(seq) OVER chain AS seq_before,
           lag(hash) OVER chain AS hash_before
    FROM audit_entries a
    WHERE (CAST(:company_id AS varchar) IS NULL OR company_id = :company_id)
    WINDOW chain AS (PARTITION BY company_id ORDER BY seq)
"""

_BROKEN = text(
    f"""
    SELECT DISTINCT ON (company_id) company_id, seq, id,
        CASE
            WHEN seq <> coalesce(seq_before, 0) + 1 THEN
                'entries missing before it: expected position '
                || (coalesce(seq_before, 0) + 1) || ', found ' || seq
            WHEN prev_hash IS DISTINCT FROM hash_before THEN
                'its link does not match the hash of the entry before it'
            ELSE 'its content does not match its hash: the entry was changed'
        END AS problem
    FROM ({_LINKS}) AS links
    WHERE hash IS DISTINCT FROM recomputed
       OR seq <> coalesce(seq_before, 0) + 1
       OR prev_hash IS DISTINCT FROM hash_before
    ORDER BY company_id, seq
    """  # noqa: S608 (no input is interpolated)
)

_CHAINS = text(
    """
    SELECT DISTINCT ON (company_id) company_id,
           count(*) OVER (PARTITION BY company_id) AS entries, seq, encode(hash, 'hex')
    FROM audit_entries
    WHERE (CAST(:company_id AS varchar) IS NULL OR company_id = :company_id)
    ORDER BY company_id, seq DESC
    """
)


async def verify_chains(session: AsyncSession, company_id: str | None = None) -> ChainReport:
    """Recompute every chain (or one company's) and name the first broken link of each."""
    params = {"company_id": company_id}
    broken = [
        BrokenLink(row[0], row[1], row[2], row[3]) for row in await session.execute(_BROKEN, params)
    ]
    chains = [
        Chain(row[0], row[1], row[2], row[3]) for row in await session.execute(_CHAINS, params)
    ]
    return ChainReport(chains, broken)
