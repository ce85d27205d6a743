"""Background jobs of gateways: wiping replaced secrets once their grace period ends."""

from __future__ import annotations

import procrastinate
import structlog

from paygate.gateways.resealing import wipe_expired_previous_credentials
from paygate.kit.jobs_context import job_context

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="*/5 * * * *")
@blueprint.task(name="wipe_expired_previous_credentials", queue="maintenance")
async def wipe_expired_previous_credentials_task(timestamp: int) -> None:
    """A replaced secret is refused as soon as its grace ends (secrets_for_verification checks
    the time); this also removes it from storage within five minutes."""
    context = job_context()
    wiped = await wipe_expired_previous_credentials(context.database, context.keyring)
    if wiped:
        logger.info("wiped_expired_previous_credentials", gateways=wiped)
