"""Background jobs of monitoring: the check rounds, passive health, alert mail, rollups."""

from __future__ import annotations

import procrastinate
import structlog

from paygate.kit.jobs_context import job_context
from paygate.monitoring import alerts, checks, passive, rollups

logger = structlog.get_logger(__name__)

blueprint = procrastinate.Blueprint()


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="run_health_checks", queue="monitoring")
async def run_health_checks(timestamp: int) -> None:
    """Each minute: check every gateway whose slot is due. A round stops after
    `monitoring_round_seconds`; whatever is still due is claimed by the next minute's round
    (on whichever worker runs it) while this one finishes."""
    context = job_context()
    await checks.run_round(context.database, context.keyring, context.settings)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="evaluate_passive_health", queue="monitoring")
async def evaluate_passive_health(timestamp: int) -> None:
    context = job_context()
    await passive.evaluate(context.database, context.settings)


@blueprint.task(name="send_alert", queue="monitoring", retry=3)
async def send_alert(alert_id: str) -> None:
    """Deferred with the alert, in the transaction that raised it."""
    context = job_context()
    await alerts.send_alert(context.database, context.settings, alert_id)


@blueprint.periodic(cron="* * * * *")
@blueprint.task(name="send_due_alerts", queue="monitoring")
async def send_due_alerts(timestamp: int) -> None:
    """The sweeper: alerts whose job did not send them (a crash, the mail server down)."""
    context = job_context()
    sent = await alerts.send_due_alerts(context.database, context.settings)
    if sent:
        logger.info("swept_alerts", sent=sent)


@blueprint.periodic(cron="23 * * * *")
@blueprint.task(name="roll_up_health_checks", queue="maintenance")
async def roll_up_health_checks(timestamp: int) -> None:
    context = job_context()
    await rollups.roll_up(context.database, context.settings)
