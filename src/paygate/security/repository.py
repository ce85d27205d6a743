"""Every query of the audit log: reads only (entries are never edited or deleted)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from paygate.kit.pagination import PageParams
from paygate.kit.repository import TenantRepository, apply_filters
from paygate.security.models import AuditEntry


@dataclass(frozen=True)
class AuditFilters:
    object_type: str | None = None
    object_id: str | None = None
    actor_id: str | None = None
    action: str | None = None
    since: datetime | None = None
    until: datetime | None = None


class AuditRepository(TenantRepository[AuditEntry]):
    model = AuditEntry
    what = "audit entry"

    async def search(
        self, filters: AuditFilters, params: PageParams
    ) -> tuple[Sequence[AuditEntry], str | None]:
        statement = apply_filters(
            self.scoped(),
            [
                (filters.object_type, lambda v: AuditEntry.object_type == v),
                (filters.object_id, lambda v: AuditEntry.object_id == v),
                (filters.actor_id, lambda v: AuditEntry.actor_id == v),
                (filters.action, lambda v: AuditEntry.action == v),
                (filters.since, lambda v: AuditEntry.occurred_at >= v),
                (filters.until, lambda v: AuditEntry.occurred_at < v),
            ],
        )
        return await self.page(statement, params)
