"""Background jobs of payments: the sweeper that resolves payments and refunds left open."""

from __future__ import annotations

from datetime import timedelta

import procrastinate
import structlog

from paygate.kit.jobs_context import job_context
from paygate.payments.context import Caller
from paygate.payments.idempotency import purge_expired_keys
from paygate.payments.service import PaymentService
from paygate.payments.sync import open_payment_ids, pending_refund_ids
from paygate.security.audit import SYSTEM

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()

# Long enough that the request that sent the payment has settled it if it could.
SETTLE_GRACE = timedelta(seconds=60)
BATCH = 100


async def sweep_open_payments(*, older_than: timedelta = SETTLE_GRACE) -> int:
    """Ask the gateway about every payment left `processing` (a timeout, a crash); returns
    how many were asked. Each sync locks its row, so sweepers on many workers are safe."""
    context = job_context()
    async with context.database.transaction() as session:
        due = await open_payment_ids(session, older_than, BATCH)
    for company_id, payment_id in due:
        service = PaymentService(
            context.database, context.keyring, context.settings, Caller(company_id, SYSTEM, None)
        )
        try:
            await service.sync(payment_id, cause="the sweeper asked the gateway")
        except Exception as exc:  # one payment's trouble must not stop the sweep
            logger.error("sweep_failed", payment_id=payment_id, error_type=type(exc).__name__)
    return len(due)


async def sweep_pending_refunds(*, older_than: timedelta = SETTLE_GRACE) -> int:
    """Ask the gateway about every refund left `pending` (answered pending, a timeout, a
    crash); returns how many were asked. Each sync locks the payment row and the refund and
    does nothing to a refund settled meanwhile, so sweepers on many workers are safe."""
    context = job_context()
    async with context.database.transaction() as session:
        due = await pending_refund_ids(session, older_than, BATCH)
    for company_id, refund_id in due:
        service = PaymentService(
            context.database, context.keyring, context.settings, Caller(company_id, SYSTEM, None)
        )
        try:
            await service.sync_refund(refund_id, cause="the sweeper asked the gateway")
        except Exception as exc:  # one refund's trouble must not stop the sweep
            logger.error("sweep_failed", refund_id=refund_id, error_type=type(exc).__name__)
    return len(due)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="sweep_open_payments", queue="payments")
async def sweep_open_payments_task(timestamp: int) -> None:
    asked = await sweep_open_payments()
    if asked:
        logger.info("swept_open_payments", asked=asked)
    refunds = await sweep_pending_refunds()
    if refunds:
        logger.info("swept_pending_refunds", asked=refunds)


@blueprint.periodic(cron="41 * * * *")
@blueprint.task(name="purge_idempotency_keys", queue="maintenance")
async def purge_idempotency_keys_task(timestamp: int) -> None:
    """Forget Idempotency-Keys past their 24 hours, so a client may use a key again."""
    async with job_context().database.transaction() as session:
        purged = await purge_expired_keys(session)
    if purged:
        logger.info("purged_idempotency_keys", purged=purged)
