"""The status rules, without a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from paygate.monitoring.alerts import duration_text
from paygate.monitoring.status import (
    CheckState,
    HealthStatus,
    after_check,
    derive_status,
    next_slot,
    uptime_percent,
)


def test_down_only_at_the_threshold_and_up_after_one_success() -> None:
    first = after_check(False, 0, 2)
    assert first.state is CheckState.PENDING
    assert first.consecutive_failures == 1
    second = after_check(False, first.consecutive_failures, 2)
    assert second.state is CheckState.DOWN
    assert after_check(False, second.consecutive_failures, 2).state is CheckState.DOWN
    assert after_check(True, 7, 2) == after_check(True, 0, 2)
    assert after_check(True, 7, 2).state is CheckState.UP
    assert after_check(False, 0, 1).state is CheckState.DOWN


def test_the_worse_source_wins_and_disabled_is_paused() -> None:
    assert derive_status(enabled=True, check_state=CheckState.UP, passive_degraded=False) is (
        HealthStatus.UP
    )
    assert derive_status(enabled=True, check_state=CheckState.UP, passive_degraded=True) is (
        HealthStatus.DEGRADED
    )
    assert derive_status(enabled=True, check_state=CheckState.DOWN, passive_degraded=True) is (
        HealthStatus.DOWN
    )
    assert derive_status(enabled=True, check_state=CheckState.PENDING, passive_degraded=False) is (
        HealthStatus.DEGRADED
    )
    assert derive_status(enabled=True, check_state=CheckState.UNKNOWN, passive_degraded=False) is (
        HealthStatus.UNKNOWN
    )
    assert derive_status(enabled=True, check_state=CheckState.UNKNOWN, passive_degraded=True) is (
        HealthStatus.DEGRADED
    )
    assert derive_status(enabled=False, check_state=CheckState.DOWN, passive_degraded=True) is (
        HealthStatus.PAUSED
    )


def test_the_next_slot_keeps_the_phase_and_skips_missed_slots() -> None:
    slot = datetime(2026, 1, 1, 12, 0, 17, tzinfo=UTC)
    five = timedelta(minutes=5)
    assert next_slot(slot, five, slot) == slot + five
    assert next_slot(slot, five, slot + timedelta(seconds=30)) == slot + five
    # A round 17 minutes late checks once and goes on with the gateway's own phase.
    assert next_slot(slot, five, slot + timedelta(minutes=17)) == slot + 4 * five
    assert next_slot(slot, five, slot + five) == slot + 2 * five


def test_uptime_and_durations_in_words() -> None:
    assert uptime_percent(0, 0) is None
    assert uptime_percent(288, 0) == 100.0
    assert uptime_percent(2016, 3) == 99.85
    assert duration_text(40) == "40 s"
    assert duration_text(12 * 60 + 5) == "12 min"
    assert duration_text(2 * 3600 + 5 * 60) == "2 h 5 min"
    assert duration_text(3 * 86400 + 3600) == "3 d 1 h"
