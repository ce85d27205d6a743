"""What the health monitor says about a company's gateways, for routing.

Routing skips a gateway the monitor reports down, beside the circuit breaker's own view
from live payments. The routing head's one statement (`RoutingRepository.head`) reads the
monitors reported down as its `monitored_down` column, so a decision makes no round trip
for it; this module says why each is skipped.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any


def monitored_down(rows: Sequence[dict[str, Any]]) -> dict[str, str]:
    """Gateway id -> why, from the head's `monitored_down` column ({gateway_id, since})."""
    return {
        row["gateway_id"]: (
            f"down since {datetime.fromisoformat(row['since']):%Y-%m-%d %H:%M} UTC (health checks)"
        )
        for row in rows
    }
