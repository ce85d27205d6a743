"""The circuit breaker per gateway: open after N technical failures in a row, one trial
payment after a cool-down (half-open), closed again by an answer from the gateway.

Fed by live payment outcomes (`record_outcome`, called after every attempt) and read, with
the health monitor's status (routing/health.py), by every routing decision. The state is in
PostgreSQL (`gateway_breakers`), so every paygate process sees the same breaker.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.clock import utcnow
from paygate.payments.signals import PaymentChange, payment_settled
from paygate.routing.models import GatewayBreaker
from paygate.routing.policy import Policy, load_policy
from paygate.routing.repository import RoutingRepository
from paygate.security import audit

logger = structlog.get_logger(__name__)

CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


@dataclass(frozen=True)
class BreakerView:
    """What a decision needs to know of the breakers: who is down, who may be tried once."""

    down: dict[str, str]  # gateway id -> why
    probe_due: set[str]  # open breakers whose cool-down is over (a trial may go through)


def view(breakers: Iterable[GatewayBreaker], policy: Policy, now: datetime) -> BreakerView:
    down: dict[str, str] = {}
    probe_due: set[str] = set()
    cooldown = policy.breaker_cooldown
    for breaker in breakers:
        if breaker.state == OPEN and breaker.opened_at is not None:
            if now - breaker.opened_at >= cooldown:
                probe_due.add(breaker.gateway_id)
            else:
                down[breaker.gateway_id] = (
                    f"circuit open after {breaker.consecutive_failures} technical failures "
                    f"in a row; a trial payment is let through "
                    f"{policy.breaker_cooldown_seconds} s after it opened"
                )
        elif breaker.state == HALF_OPEN:
            started = breaker.probe_started_at
            if started is None or now - started >= cooldown:
                probe_due.add(breaker.gateway_id)
            else:
                down[breaker.gateway_id] = "circuit half-open: a trial payment is in progress"
    return BreakerView(down, probe_due)


async def record_outcome(
    session: AsyncSession,
    company_id: str,
    gateway_id: str,
    *,
    technical_failure: bool,
    detail: str | None = None,
    policy: Policy | None = None,
    now: datetime | None = None,
) -> str:
    """Count one attempt's outcome; returns the breaker's state after it.

    A technical failure (timeout, 5xx, unreachable, bad credentials) counts against the
    gateway; any answer from it (success or a decline: the gateway works) closes the
    breaker. Transitions are logged and audited; steady successes write nothing.
    """
    moment = now or utcnow()
    routing = RoutingRepository(session, company_id)
    if not technical_failure:
        before = await routing.close_breaker(gateway_id, moment)
        if before in (OPEN, HALF_OPEN):
            await _transition(session, company_id, gateway_id, before, CLOSED, "it answered again")
        return CLOSED
    policy = policy or await load_policy(session, company_id)
    counted = await routing.count_failure(
        gateway_id, policy.breaker_failures, (detail or "technical failure")[:500], moment
    )
    if counted.opened:
        reason = (
            "the trial payment failed"
            if counted.before == HALF_OPEN
            else f"{counted.consecutive_failures} technical failures in a row"
        )
        await _transition(session, company_id, gateway_id, counted.before, OPEN, reason)
    return counted.state


async def _transition(
    session: AsyncSession, company_id: str, gateway_id: str, before: str, after: str, why: str
) -> None:
    log = logger.warning if after == OPEN else logger.info
    log("gateway_breaker", gateway_id=gateway_id, before=before, after=after, reason=why)
    await audit.record(
        session,
        company_id=company_id,
        actor=audit.SYSTEM,
        origin=None,
        action="gateway.breaker_opened" if after == OPEN else "gateway.breaker_closed",
        object_type="gateway",
        object_id=gateway_id,
        changes={"breaker": {"before": before, "after": after}},
        detail=f"Circuit breaker {after.replace('_', '-')}: {why}.",
    )


@payment_settled.connect
async def close_on_answer(session: AsyncSession, change: PaymentChange) -> None:
    """A payment the gateway answered (succeeded, or declined: the gateway works) closes
    its breaker; technical failures are counted by the failover (payments/failover.py)."""
    if change.kind != "payment":
        return
    answered = change.to_status == "succeeded" or (
        change.to_status == "failed" and change.failure_kind == "decline"
    )
    if answered:
        await record_outcome(session, change.company_id, change.gateway_id, technical_failure=False)
