"""What the health monitor says about a company's gateways, for routing.

Routing skips a gateway the monitor reports down, beside the circuit breaker's own view
from live payments. This is the one place routing reads the monitor: when the monitoring
domain's table lands (issue 12: `gateway_monitors.status = 'down'`), only this function
changes.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession


async def monitored_down(session: AsyncSession, company_id: str) -> dict[str, str]:
    """Gateway id -> why, for the company's gateways the health monitor reports down.

    Until the monitor's table exists this reports none: the circuit breaker alone decides.
    """
    del session, company_id
    return {}
