"""What the health monitor says about a company's gateways, for routing.

Routing skips a gateway the monitor reports down, beside the circuit breaker's own view
from live payments. This is the one place routing reads the monitor.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.monitoring.models import GatewayMonitor


async def monitored_down(session: AsyncSession, company_id: str) -> dict[str, str]:
    """Gateway id -> why, for the company's gateways the health monitor reports down."""
    statement = select(GatewayMonitor.gateway_id, GatewayMonitor.status_since).where(
        GatewayMonitor.company_id == company_id, GatewayMonitor.status == "down"
    )
    return {
        gateway_id: f"down since {since:%Y-%m-%d %H:%M} UTC (health checks)"
        for gateway_id, since in (await session.execute(statement)).tuples()
    }
