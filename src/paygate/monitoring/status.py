"""Health statuses and the rules between them (pure: no database, easy to test).

A gateway's status is derived from two sources:

- its scheduled checks: one failure makes it "pending" (as Uptime Kuma's retries), the
  `failure_threshold`-th failure in a row makes it down, one success makes it up again;
- its live traffic: technical failures (timeouts, 5xx, network) of real payments and
  refunds over a rate make it degraded between two checks.

The worse of the two wins; a disabled (or archived) gateway is paused, never checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum


class HealthStatus(StrEnum):
    UP = "up"
    DEGRADED = "degraded"
    DOWN = "down"
    PAUSED = "paused"
    UNKNOWN = "unknown"


class CheckState(StrEnum):
    UNKNOWN = "unknown"  # never checked (or checked again after a pause)
    UP = "up"
    PENDING = "pending"  # failing, but fewer times in a row than the threshold
    DOWN = "down"


class IncidentKind(StrEnum):
    OUTAGE = "outage"  # the checks say down
    DEGRADATION = "degradation"  # live traffic fails over the threshold


class AlertKind(StrEnum):
    GATEWAY_DOWN = "gateway_down"
    GATEWAY_UP = "gateway_up"
    FAILURE_SPIKE = "failure_spike"
    TLS_EXPIRY = "tls_expiry"


ALERT_KIND_LABELS: dict[AlertKind, str] = {
    AlertKind.GATEWAY_DOWN: "Gateway down",
    AlertKind.GATEWAY_UP: "Gateway recovered",
    AlertKind.FAILURE_SPIKE: "Failed-payment spike",
    AlertKind.TLS_EXPIRY: "TLS certificate expiring",
}

# How bad each status is, for "the worse of the two".
_SEVERITY = {
    HealthStatus.UNKNOWN: 0,
    HealthStatus.UP: 1,
    HealthStatus.DEGRADED: 2,
    HealthStatus.DOWN: 3,
}


@dataclass(frozen=True)
class CheckOutcome:
    state: CheckState
    consecutive_failures: int


def after_check(ok: bool, consecutive_failures: int, threshold: int) -> CheckOutcome:
    """The check state after one result: down only at the threshold, up after one success."""
    if ok:
        return CheckOutcome(CheckState.UP, 0)
    failures = consecutive_failures + 1
    state = CheckState.DOWN if failures >= threshold else CheckState.PENDING
    return CheckOutcome(state, failures)


def derive_status(
    *, enabled: bool, check_state: CheckState, passive_degraded: bool
) -> HealthStatus:
    if not enabled:
        return HealthStatus.PAUSED
    from_checks = {
        CheckState.UNKNOWN: HealthStatus.UNKNOWN,
        CheckState.UP: HealthStatus.UP,
        CheckState.PENDING: HealthStatus.DEGRADED,
        CheckState.DOWN: HealthStatus.DOWN,
    }[check_state]
    from_traffic = HealthStatus.DEGRADED if passive_degraded else HealthStatus.UNKNOWN
    return max(from_checks, from_traffic, key=_SEVERITY.__getitem__)


def next_slot(slot: datetime, interval: timedelta, now: datetime) -> datetime:
    """The first slot of the schedule after `now`, keeping the gateway's phase.

    Keeping the phase keeps thousands of gateways spread over the interval as they were
    placed; a late round skips the slots it missed instead of checking twice to catch up.
    """
    if slot > now:
        return slot + interval
    missed = (now - slot) // interval
    return slot + (missed + 1) * interval


def uptime_percent(checks: int, failures: int) -> float | None:
    """Successful checks as a percentage (two decimals); None without any check."""
    if checks <= 0:
        return None
    return round(100.0 * (checks - failures) / checks, 2)
