"""Raw check results older than the retention become one row per gateway and hour, so the
check table stays the size of a week of checks however long paygate runs."""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.monitoring.system_repository import roll_up_checks_before
from paygate.settings import Settings

logger = structlog.get_logger(__name__)


def rollup_cutoff(now: datetime, retention: timedelta) -> datetime:
    """The start of the hour `retention` ago: only whole hours are rolled up."""
    return (now - retention).replace(minute=0, second=0, microsecond=0)


async def roll_up(database: Database, settings: Settings, *, now: datetime | None = None) -> int:
    """Roll every whole hour past the retention into `health_check_hours`; how many hours."""
    cutoff = rollup_cutoff(now or utcnow(), timedelta(days=settings.monitoring_raw_retention_days))
    async with database.transaction() as session:
        hours = await roll_up_checks_before(session, cutoff)
    if hours:
        logger.info("health_checks_rolled_up", hours=hours, before=cutoff.isoformat())
    return hours
