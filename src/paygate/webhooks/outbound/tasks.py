"""Jobs of outbound webhooks: attempt a delivery, sweep up deliveries no job finished, wipe
rotated-out secrets, forget old deliveries."""

from __future__ import annotations

from datetime import datetime, timedelta

import procrastinate
import structlog
from procrastinate.exceptions import AlreadyEnqueued

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.jobs_context import job_context
from paygate.security import audit
from paygate.security.crypto import Keyring, KeyringError
from paygate.webhooks.outbound import secrets as signing
from paygate.webhooks.outbound import subscriptions  # noqa: F401  (connects the listeners)
from paygate.webhooks.outbound.dispatch import Dispatcher
from paygate.webhooks.outbound.enqueue import DELIVER_TASK, QUEUE
from paygate.webhooks.outbound.repository import (
    endpoints_not_under,
    endpoints_with_expired_previous,
    overdue_deliveries,
    purge_finished,
)

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()

# A delivery this late was lost by its job (a worker died, or the job was never run).
SWEEP_GRACE = timedelta(seconds=60)
SWEEP_BATCH = 500
# Ended deliveries and their attempts are kept this long in the delivery log.
KEEP_DELIVERIES = timedelta(days=30)


@blueprint.task(name="deliver_webhook", queue=QUEUE)
async def deliver_webhook(delivery_id: str) -> None:
    context = job_context()
    await Dispatcher(context.database, context.keyring, context.settings).deliver(delivery_id)


async def sweep_overdue_deliveries(database: Database, *, now: datetime | None = None) -> int:
    """Defer a job for every pending delivery overdue by SWEEP_GRACE; returns how many.

    A queueing lock per delivery keeps one such job waiting however often the sweep runs;
    the job itself checks the row, so one that finds it done meanwhile does nothing.
    """
    before = (now or utcnow()) - SWEEP_GRACE
    deferred = 0
    async with database.transaction() as session:
        for delivery_id in await overdue_deliveries(session, before, SWEEP_BATCH):
            try:
                async with session.begin_nested():
                    await defer_in_transaction(
                        session,
                        DELIVER_TASK,
                        queue=QUEUE,
                        queueing_lock=f"webhook-delivery:{delivery_id}",
                        delivery_id=delivery_id,
                    )
                deferred += 1
            except AlreadyEnqueued:
                continue
    return deferred


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sweep_webhook_deliveries", queue="maintenance")
async def sweep_webhook_deliveries(timestamp: int) -> None:
    deferred = await sweep_overdue_deliveries(job_context().database)
    if deferred:
        logger.warning("webhook_deliveries_swept", deferred=deferred)


async def wipe_expired_previous_secrets(
    database: Database, keyring: Keyring, *, now: datetime | None = None, batch: int = 100
) -> int:
    """Remove rotated-out secrets whose window ended (deliveries stopped using them at that
    moment already); returns how many endpoints changed."""
    moment = now or utcnow()
    wiped = 0
    async with database.transaction() as session:
        for endpoint in await endpoints_with_expired_previous(session, moment, batch):
            try:
                current = signing.open_secrets(endpoint, keyring).current
            except KeyringError:
                continue  # reported when a delivery tries to sign; never lose the current one
            signing.seal(endpoint, keyring, signing.SigningSecrets(current, None))
            endpoint.previous_secret_expires_at = None
            endpoint.secret_hint = {
                k: v for k, v in endpoint.secret_hint.items() if k != "previous_valid_until"
            }
            await audit.record(
                session,
                company_id=endpoint.company_id,
                actor=audit.SYSTEM,
                origin=None,
                action="webhook_endpoint.previous_secret_wiped",
                object_type="webhook_endpoint",
                object_id=endpoint.id,
                detail="The rotation window ended; the previous signing secret was wiped.",
            )
            wiped += 1
    return wiped


@blueprint.periodic(cron="*/5 * * * *")
@blueprint.task(name="wipe_expired_webhook_secrets", queue="maintenance")
async def wipe_expired_webhook_secrets(timestamp: int) -> None:
    context = job_context()
    wiped = await wipe_expired_previous_secrets(context.database, context.keyring)
    if wiped:
        logger.info("wiped_expired_webhook_secrets", endpoints=wiped)


async def rewrap_endpoint_secrets(database: Database, keyring: Keyring, *, batch: int = 100) -> int:
    """Re-wrap every endpoint's data key under the primary master key (after the operator
    added a new one); returns how many. One that cannot be unwrapped is logged at error level
    and left as it is: its deliveries fail loudly until the old key is restored."""
    rewrapped = 0
    failed: list[str] = []
    while True:
        async with database.transaction() as session:
            found = await endpoints_not_under(session, keyring.primary_key_id, batch, failed)
            for endpoint in found:
                try:
                    keyring.rewrap_row(endpoint)
                except KeyringError as exc:
                    failed.append(endpoint.id)
                    logger.error(
                        "webhook_secret_rewrap_failed",
                        endpoint_id=endpoint.id,
                        key_id=endpoint.key_id,
                        reason=str(exc),
                    )
                    continue
                rewrapped += 1
        if len(found) < batch:
            return rewrapped


@blueprint.periodic(cron="*/10 * * * *")
@blueprint.task(name="rewrap_webhook_secrets", queue="maintenance")
async def rewrap_webhook_secrets(timestamp: int) -> None:
    """Endpoint secrets follow the primary master key by themselves, within ten minutes."""
    context = job_context()
    rewrapped = await rewrap_endpoint_secrets(context.database, context.keyring)
    if rewrapped:
        logger.info("rewrapped_webhook_secrets", endpoints=rewrapped)


@blueprint.periodic(cron="23 4 * * *")
@blueprint.task(name="purge_webhook_deliveries", queue="maintenance")
async def purge_webhook_deliveries(timestamp: int) -> None:
    async with job_context().database.transaction() as session:
        purged = await purge_finished(session, utcnow() - KEEP_DELIVERIES)
    if purged:
        logger.info("purged_webhook_deliveries", deliveries=purged)
