"""Background jobs of security: re-wrapping a company's data keys under the new master key."""

from __future__ import annotations

import procrastinate

from paygate.kit.jobs_context import job_context
from paygate.security.key_rotation import QUEUE, TASK_NAME, run_rotation

blueprint = procrastinate.Blueprint()


@blueprint.task(name=TASK_NAME.split(":", 1)[1], queue=QUEUE)
async def rewrap_company_keys(rotation_id: str) -> None:
    """Deferred by KeyRotationService.start in the transaction that recorded the run."""
    context = job_context()
    await run_rotation(context.database, context.keyring, rotation_id)
