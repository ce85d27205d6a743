"""Configuration history: numbered versions of a configuration, to list, compare and restore.

One mechanism for every configuration that keeps its history (a company's routing rule
set, a gateway, a webhook endpoint): the domain hands over a JSON snapshot of the whole
configuration after each change, and gets back a numbered version. Restoring is the
domain's own work (only it knows how to apply a snapshot); it records the result as a new
version, so history only grows and a restore can itself be undone.

Snapshots are what the audit log may show: never a secret (a gateway's snapshot carries
masks and change times, as `Gateway.snapshot()` does).

Concurrency: the caller serializes changes to one configuration (it holds a row lock on the
configuration while it changes it); the unique (company, type, object, version) index turns
a caller that forgot into an error instead of two versions with one number.

The API shapes of versions (list, one, what a restore answers) are in history_schemas.py,
shared by every domain's endpoints.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import ForeignKey, Index, Integer, Select, String, Text, delete, func, select
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from paygate.db import Base
from paygate.kit.columns import CompanyRef, CreatedAt, PublicId
from paygate.kit.errors import not_found
from paygate.kit.ids import new_id
from paygate.security.audit import SYSTEM, Actor, diff

# The summary of the version that keeps how an object was before its first recorded change.
BASELINE = "as it was before its history was kept"


class ConfigVersion(Base):
    """One version of one configuration: the whole of it, as it was after a change."""

    __tablename__ = "config_versions"
    __table_args__ = (
        Index(
            "ix_config_versions_object_version",
            "company_id",
            "object_type",
            "object_id",
            "version",
            unique=True,
        ),
    )

    id: Mapped[PublicId]
    company_id: Mapped[CompanyRef] = mapped_column(ForeignKey("companies.id"))
    object_type: Mapped[str] = mapped_column(String(40))  # "routing_rule_set", "gateway", ...
    object_id: Mapped[str] = mapped_column(String(40))
    version: Mapped[int] = mapped_column(Integer)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    # What the change was, in plain words ("rule 'EUR' edited", "restored version 3").
    summary: Mapped[str] = mapped_column(Text)
    # The version this one restored, if it was a restore.
    restored_from: Mapped[int | None] = mapped_column(Integer)
    actor_type: Mapped[str] = mapped_column(String(20))
    actor_id: Mapped[str | None] = mapped_column(String(40))
    actor_label: Mapped[str | None] = mapped_column(String(320))
    created_at: Mapped[CreatedAt]

    def detail(self) -> str:
        """How the audit entry of the change names this version."""
        return f"Version {self.version}: {self.summary}."


ObjectT = TypeVar("ObjectT")


@dataclass(frozen=True)
class Restored(Generic[ObjectT]):
    """A restore's outcome: the object as it now is, the version that recorded it, and
    what no version holds (secrets), kept as it was, in names and in words."""

    target: ObjectT
    version: ConfigVersion
    kept: list[str]
    note: str


class ConfigHistory:
    """The versions of one kind of configuration of one company."""

    def __init__(self, session: AsyncSession, company_id: str, object_type: str) -> None:
        self.session = session
        self.company_id = company_id
        self.object_type = object_type

    def _scoped(self, object_id: str) -> Select[ConfigVersion]:
        return select(ConfigVersion).where(
            ConfigVersion.company_id == self.company_id,
            ConfigVersion.object_type == self.object_type,
            ConfigVersion.object_id == object_id,
        )

    async def latest_number(self, object_id: str) -> int:
        """The newest version's number; 0 when nothing was recorded yet."""
        statement = select(func.coalesce(func.max(ConfigVersion.version), 0)).where(
            ConfigVersion.company_id == self.company_id,
            ConfigVersion.object_type == self.object_type,
            ConfigVersion.object_id == object_id,
        )
        return int((await self.session.execute(statement)).scalar_one())

    async def record(
        self,
        object_id: str,
        snapshot: dict[str, Any],
        *,
        actor: Actor,
        summary: str,
        restored_from: int | None = None,
    ) -> ConfigVersion:
        """Store `snapshot` as the next version (the caller holds the configuration's lock)."""
        version = ConfigVersion(
            id=new_id("cfv"),
            company_id=self.company_id,
            object_type=self.object_type,
            object_id=object_id,
            version=await self.latest_number(object_id) + 1,
            snapshot=snapshot,
            summary=summary,
            restored_from=restored_from,
            actor_type=actor.type,
            actor_id=actor.id,
            actor_label=actor.label,
        )
        self.session.add(version)
        await self.session.flush()
        return version

    async def record_change(
        self,
        object_id: str,
        before: dict[str, Any] | None,
        after: dict[str, Any],
        *,
        actor: Actor,
        summary: str,
        restored_from: int | None = None,
    ) -> ConfigVersion | None:
        """Record `after` as the next version; None (no version) when nothing it shows changed.

        `before` is the snapshot before the change, None for a new object. An object made
        before its history was kept has no version yet: its `before` becomes version 1
        first (recorded as paygate's), so that first change can be undone too. A restore
        always makes a version, as the routing rule set's does.
        """
        if before is not None and restored_from is None and before == after:
            return None
        if before is not None and await self.latest_number(object_id) == 0:
            await self.record(object_id, before, actor=SYSTEM, summary=BASELINE)
        return await self.record(
            object_id, after, actor=actor, summary=summary, restored_from=restored_from
        )

    async def forget(self, object_id: str) -> None:
        """Drop the versions of a deleted object: with its row gone nothing could restore
        them, and the audit log keeps every change that was made."""
        await self.session.execute(
            delete(ConfigVersion).where(
                ConfigVersion.company_id == self.company_id,
                ConfigVersion.object_type == self.object_type,
                ConfigVersion.object_id == object_id,
            )
        )

    async def versions(self, object_id: str, *, limit: int = 100) -> Sequence[ConfigVersion]:
        """Newest first."""
        statement = self._scoped(object_id).order_by(ConfigVersion.version.desc()).limit(limit)
        return (await self.session.execute(statement)).scalars().all()

    async def get(self, object_id: str, version: int) -> ConfigVersion:
        statement = self._scoped(object_id).where(ConfigVersion.version == version)
        found = (await self.session.execute(statement)).scalar_one_or_none()
        if found is None:
            raise not_found("version")
        return found


def changes_between(before: ConfigVersion | None, after: ConfigVersion) -> dict[str, Any]:
    """What a version changed compared with the one before it, as the audit log shows it."""
    return diff(before.snapshot if before else {}, after.snapshot)


def listed(names: Sequence[str]) -> str:
    """ "name", "name and URL", "name, priority and URL"."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


def summary_of_edits(names: Sequence[str]) -> str | None:
    """A version's summary for fields edited: "name, priority and URL changed"."""
    return f"{listed(names)} changed" if names else None
