"""Alert mail: written to the outbox in the transaction that decided it, sent by a job.

Why an outbox (see docs/decisions.md §11): an alert must go out once per incident however
many workers see the change, and must not be lost when a process dies between the change
and the mail. The unique `dedup_key` gives the once; the row, the job deferred with it and
the sweeper give the not lost. Alerts hold no secret: gateway names, ids, times and the
error taxonomy's messages only.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.models import Gateway
from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.ids import new_id
from paygate.kit.mail import Email, Mailer, MailError
from paygate.monitoring.models import Incident
from paygate.monitoring.status import AlertKind
from paygate.monitoring.system_repository import (
    add_alert,
    due_alert_ids,
    lock_unsent_alert,
    recipients_for,
)
from paygate.security import audit
from paygate.settings import Settings

logger = structlog.get_logger(__name__)

SEND_TASK = "monitoring:send_alert"
QUEUE = "monitoring"
# A failed hand-over is retried with a growing pause, then given up (and logged).
MAX_ATTEMPTS = 8


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def duration_text(seconds: int) -> str:
    """'2 h 5 min', '12 min', '40 s': how long an incident lasted, in words."""
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def _footer(settings: Settings, gateway: Gateway) -> str:
    return (
        f"\nGateway health: {settings.base_url}/health/gateways/{gateway.id}\n"
        f"Choose who receives which alerts: {settings.base_url}/health/alerts\n"
    )


def _about(gateway: Gateway) -> str:
    return f"{gateway.name} ({gateway.gateway_type}, {gateway.environment}, {gateway.id})"


def down_mail(gateway: Gateway, incident: Incident, failures: int, settings: Settings) -> Email:
    return Email(
        to=(),
        subject=f"paygate: {gateway.name} is down",
        text=(
            f"The gateway {_about(gateway)} is down: its last {failures} health checks failed "
            f"in a row, the first at {_when(incident.started_at)}.\n\n"
            f"Last error: {incident.last_message or incident.cause}\n\n"
            "paygate keeps checking it and will tell you once when it recovers. Payments "
            "routed to it may fail or go to another gateway meanwhile.\n"
            + _footer(settings, gateway)
        ),
    )


def recovery_mail(gateway: Gateway, incident: Incident, settings: Settings) -> Email:
    assert incident.ended_at is not None
    lasted = duration_text(int((incident.ended_at - incident.started_at).total_seconds()))
    return Email(
        to=(),
        subject=f"paygate: {gateway.name} is back up after {lasted}",
        text=(
            f"The gateway {_about(gateway)} answered its health check again at "
            f"{_when(incident.ended_at)}.\n\n"
            f"The outage lasted {lasted} (from {_when(incident.started_at)}), with "
            f"{incident.failed_checks} failed checks. It began with: {incident.cause}\n"
            + _footer(settings, gateway)
        ),
    )


def spike_mail(gateway: Gateway, incident: Incident, reason: str, settings: Settings) -> Email:
    return Email(
        to=(),
        subject=f"paygate: {gateway.name} is failing payments",
        text=(
            f"Live payments and refunds through the gateway {_about(gateway)} are failing "
            f"for technical reasons (timeouts, server errors, connection failures): {reason}. "
            f"paygate marked it degraded at {_when(incident.started_at)}.\n\n"
            f"Latest error: {incident.last_message or incident.cause}\n"
            + _footer(settings, gateway)
        ),
    )


def tls_mail(gateway: Gateway, expires_at: datetime, now: datetime, settings: Settings) -> Email:
    days = (expires_at - now).days
    when = "has expired" if expires_at <= now else f"expires in {days} day{'s' * (days != 1)}"
    host = gateway.public_config.get("base_url", "")
    return Email(
        to=(),
        subject=f"paygate: the TLS certificate of {gateway.name} {when}",
        text=(
            f"The TLS certificate served at {host} for the gateway {_about(gateway)} {when} "
            f"(valid until {_when(expires_at)}).\n\n"
            "Once it has expired, paygate cannot reach the gateway and payments through it "
            "fail. Renew the certificate on the gateway's server.\n" + _footer(settings, gateway)
        ),
    )


async def raise_alert(
    session: AsyncSession,
    *,
    kind: AlertKind,
    gateway: Gateway,
    incident: Incident | None,
    dedup_key: str,
    mail: Email,
    now: datetime,
) -> str | None:
    """Put an alert in the outbox and defer its job, both in the caller's transaction.

    Returns the new alert's id, or None when this alert was raised before (the same
    incident seen by another worker, a repeated run): nothing is sent twice.
    """
    alert_id = await add_alert(
        session,
        {
            "id": new_id("alt"),
            "company_id": gateway.company_id,
            "gateway_id": gateway.id,
            "incident_id": incident.id if incident is not None else None,
            "kind": kind.value,
            "dedup_key": dedup_key,
            "subject": mail.subject[:300],
            "body": mail.text,
            "created_at": now,
            # Due at once (a round replaying a schedule passes a `now` of its own).
            "next_attempt_at": min(now, utcnow()),
            "attempts": 0,
        },
    )
    if alert_id is not None:
        await defer_in_transaction(session, SEND_TASK, queue=QUEUE, alert_id=alert_id)
        logger.info("alert_raised", alert_id=alert_id, kind=kind.value, gateway_id=gateway.id)
    return alert_id


async def send_alert(database: Database, settings: Settings, alert_id: str) -> bool:
    """Mail one alert to its recipients; True when it went out now.

    The row stays locked while the mail is handed over, so a second worker skips it; the
    mark and the audit entry commit with that lock. A refused hand-over rolls nothing
    forward: the alert stays unsent and is tried again later.
    """
    mailer = Mailer(settings)
    failure: str | None = None
    async with database.transaction() as session:
        alert = await lock_unsent_alert(session, alert_id)
        if alert is None:
            return False  # sent already, or another worker is sending it
        recipients = await recipients_for(session, alert.company_id, alert.kind)
        now = utcnow()
        if recipients:
            try:
                await mailer.send(Email(tuple(recipients), alert.subject, alert.body))
            except MailError as exc:
                failure = str(exc)
        if failure is None:
            alert.sent_at = now
            alert.recipients = len(recipients)
            await audit.record(
                session,
                company_id=alert.company_id,
                actor=audit.SYSTEM,
                origin=None,
                action="monitoring.alert_sent",
                object_type="gateway",
                object_id=alert.gateway_id,
                detail=f"{alert.kind} alert ({alert.id}) mailed to {len(recipients)} recipient(s)"
                if recipients
                else f"{alert.kind} alert ({alert.id}): nobody chose to receive it",
            )
            return bool(recipients)
        alert.attempts += 1
        alert.last_error = failure
        if alert.attempts >= MAX_ATTEMPTS:
            # Given up: kept unsent (visible) but no longer due.
            alert.next_attempt_at = now + timedelta(days=3650)
            logger.error("alert_given_up", alert_id=alert.id, attempts=alert.attempts)
        else:
            alert.next_attempt_at = now + timedelta(minutes=2**alert.attempts)
            logger.warning("alert_not_sent", alert_id=alert.id, attempts=alert.attempts)
    return False


async def send_due_alerts(database: Database, settings: Settings, *, limit: int = 100) -> int:
    """The sweeper: send every alert whose job did not (a crash, a mail server down)."""
    async with database.transaction() as session:
        due = await due_alert_ids(session, utcnow(), limit)
    sent = 0
    for alert_id in due:
        sent += int(await send_alert(database, settings, alert_id))
    return sent
