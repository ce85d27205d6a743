"""Every query of routing: rules, the company's routing head, retry policy, breakers, rates."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Select, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.kit.repository import TenantRepository
from paygate.kit.sql import HotStatement, run
from paygate.routing.engine import SuccessRate
from paygate.routing.health import monitored_down
from paygate.routing.models import GatewayBreaker, RetryPolicy, RoutingConfig, RoutingRule


@dataclass(frozen=True)
class Counted:
    """A breaker after one more technical failure."""

    before: str
    state: str
    consecutive_failures: int
    opened: bool  # this failure opened it


@dataclass(frozen=True)
class Head:
    version: int | None  # None: the company never configured routing
    default_gateway_ids: tuple[str, ...]
    policy: RetryPolicy | None
    open_breakers: list[GatewayBreaker]  # unsaved copies, for reading
    monitored_down: dict[str, str]  # gateway id -> why, for those health checks report down


_HEAD = HotStatement(
    text(
        """
        SELECT c.version, c.default_gateway_ids,
               p.max_attempts, p.retry_decline_codes, p.failover_customer_present, p.failover_api,
               p.breaker_failures, p.breaker_cooldown_seconds, p.updated_at AS policy_updated_at,
               (SELECT coalesce(json_agg(json_build_object(
                           'gateway_id', b.gateway_id, 'state', b.state,
                           'consecutive_failures', b.consecutive_failures,
                           'opened_at', b.opened_at, 'probe_started_at', b.probe_started_at)),
                       '[]'::json)
                FROM gateway_breakers b
                WHERE b.company_id = :company_id AND b.state <> 'closed') AS breakers,
               (SELECT coalesce(json_agg(json_build_object(
                           'gateway_id', m.gateway_id, 'since', m.status_since)), '[]'::json)
                FROM gateway_monitors m
                WHERE m.company_id = :company_id AND m.status = 'down') AS monitored_down
        FROM (SELECT 1) AS one
        LEFT JOIN routing_configs c ON c.company_id = :company_id
        LEFT JOIN retry_policies p ON p.company_id = :company_id
        """
    )
)


_COUNT_FAILURE = HotStatement(
    text(
        """
        WITH before AS MATERIALIZED (
            SELECT state FROM gateway_breakers
            WHERE gateway_id = :gateway_id AND company_id = :company_id
            FOR UPDATE
        )
        INSERT INTO gateway_breakers AS b (gateway_id, company_id, state,
                                           consecutive_failures, opened_at, last_failure,
                                           updated_at)
        -- Joined so that `before` is read (and its row locked) before the upsert.
        SELECT :gateway_id, :company_id,
               CASE WHEN :threshold <= 1 THEN 'open' ELSE 'closed' END, 1,
               CASE WHEN :threshold <= 1 THEN CAST(:now AS timestamptz) END, :detail,
               :now
        FROM (SELECT 1) AS one LEFT JOIN before ON true
        ON CONFLICT (gateway_id) DO UPDATE
        SET consecutive_failures = b.consecutive_failures + 1,
            last_failure = excluded.last_failure,
            updated_at = excluded.updated_at,
            state = CASE WHEN b.state = 'half_open' OR (b.state = 'closed'
                              AND b.consecutive_failures + 1 >= :threshold)
                         THEN 'open' ELSE b.state END,
            opened_at = CASE WHEN b.state = 'half_open' OR (b.state = 'closed'
                                  AND b.consecutive_failures + 1 >= :threshold)
                             THEN excluded.updated_at ELSE b.opened_at END,
            probe_started_at = CASE WHEN b.state = 'half_open' OR (b.state = 'closed'
                                         AND b.consecutive_failures + 1 >= :threshold)
                                    THEN NULL ELSE b.probe_started_at END
        WHERE b.company_id = :company_id
        RETURNING (SELECT state FROM before) AS before, b.state, b.consecutive_failures,
                  b.state = 'open' AND b.opened_at = :now AS opened
        """
    )
)


_CLOSE_BREAKER = HotStatement(
    text(
        """
        WITH before AS (
            SELECT gateway_id, state FROM gateway_breakers
            WHERE gateway_id = :gateway_id AND company_id = :company_id
              AND (state <> 'closed' OR consecutive_failures > 0)
            FOR UPDATE
        )
        UPDATE gateway_breakers b
        SET state = 'closed', consecutive_failures = 0, opened_at = NULL,
            probe_started_at = NULL, updated_at = :now
        FROM before WHERE b.gateway_id = before.gateway_id
        RETURNING before.state
        """
    )
)


_CLAIM_PROBE = HotStatement(
    text(
        """
        UPDATE gateway_breakers
        SET state = 'half_open', probe_started_at = :now, updated_at = :now
        WHERE gateway_id = :gateway_id AND company_id = :company_id
          AND ((state = 'open' AND opened_at <= :due)
               OR (state = 'half_open' AND probe_started_at <= :due))
        RETURNING gateway_id
        """
    )
)


def _moment(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class RuleRepository(TenantRepository[RoutingRule]):
    model = RoutingRule
    what = "routing rule"

    def ordered_statement(self) -> Select[RoutingRule]:
        return self.scoped().order_by(RoutingRule.position, RoutingRule.id)

    async def ordered(self) -> Sequence[RoutingRule]:
        return (await self.session.execute(self.ordered_statement())).scalars().all()

    async def delete_all(self) -> None:
        for rule in await self.ordered():
            await self.session.delete(rule)
        await self.session.flush()


class RoutingRepository:
    """The company's routing head, retry policy and circuit breakers (one row per company or
    per gateway, always filtered by the caller's company)."""

    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    async def config(self) -> RoutingConfig | None:
        return await self.session.get(RoutingConfig, self.company_id)

    async def lock_config(self) -> RoutingConfig:
        """The company's routing head, created on first use, row-locked: one change at a
        time, so versions are numbered one after the other."""
        await self.session.execute(
            insert(RoutingConfig)
            .values(company_id=self.company_id, default_gateway_ids=[], version=0)
            .on_conflict_do_nothing(index_elements=["company_id"])
        )
        statement = (
            select(RoutingConfig)
            .where(RoutingConfig.company_id == self.company_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(statement)).scalar_one()

    async def version(self) -> int:
        statement = select(RoutingConfig.version).where(RoutingConfig.company_id == self.company_id)
        return int((await self.session.execute(statement)).scalar_one_or_none() or 0)

    async def head(self) -> Head:
        """What every decision reads besides the gateways, in one round trip: the rule set's
        version and default list, the retry policy, and the breakers not closed."""
        (row,) = await run(self.session, _HEAD, {"company_id": self.company_id})
        policy = None
        if row.max_attempts is not None:
            policy = RetryPolicy(
                company_id=self.company_id,
                max_attempts=row.max_attempts,
                retry_decline_codes=list(row.retry_decline_codes),
                failover_customer_present=row.failover_customer_present,
                failover_api=row.failover_api,
                breaker_failures=row.breaker_failures,
                breaker_cooldown_seconds=row.breaker_cooldown_seconds,
                updated_at=row.policy_updated_at,
            )
        breakers = [
            GatewayBreaker(
                gateway_id=b["gateway_id"],
                company_id=self.company_id,
                state=b["state"],
                consecutive_failures=b["consecutive_failures"],
                opened_at=_moment(b["opened_at"]),
                probe_started_at=_moment(b["probe_started_at"]),
            )
            for b in row.breakers
        ]
        return Head(
            row.version,
            tuple(row.default_gateway_ids or ()),
            policy,
            breakers,
            monitored_down(row.monitored_down),
        )

    async def policy(self, *, for_update: bool = False) -> RetryPolicy | None:
        statement = select(RetryPolicy).where(RetryPolicy.company_id == self.company_id)
        if for_update:
            statement = statement.with_for_update().execution_options(populate_existing=True)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def breakers(self) -> Sequence[GatewayBreaker]:
        statement = select(GatewayBreaker).where(GatewayBreaker.company_id == self.company_id)
        return (await self.session.execute(statement)).scalars().all()

    async def count_failure(
        self, gateway_id: str, threshold: int, detail: str, now: datetime
    ) -> Counted:
        """Count one technical failure on the gateway's breaker (the row made on first use),
        opening it at `threshold` in a row or when a half-open trial failed: one statement,
        whose row lock the caller's transaction holds until it commits."""
        params = {
            "gateway_id": gateway_id,
            "company_id": self.company_id,
            "threshold": threshold,
            "detail": detail,
            "now": now,
        }
        (row,) = await run(self.session, _COUNT_FAILURE, params)
        # A row another transaction made meanwhile is not seen by `before`: it was closed.
        return Counted(row.before or "closed", row.state, row.consecutive_failures, row.opened)

    async def close_breaker(self, gateway_id: str, now: datetime) -> str | None:
        """Close the breaker after the gateway answered; the state it was in, or None when
        there was nothing to close (no row, or closed with no failures: then nothing is
        written, so the steady state costs no row lock)."""
        params = {"gateway_id": gateway_id, "company_id": self.company_id, "now": now}
        # The breaker's own row: what settling has pending is written after it, together.
        rows = await run(self.session, _CLOSE_BREAKER, params, sees_pending=False)
        return str(rows[0].state) if rows else None

    async def claim_probe(self, gateway_id: str, cooldown: timedelta, now: datetime) -> bool:
        """Let one trial payment through a breaker whose cool-down is over (half-open).
        True for the one caller that won it; the others keep treating the gateway as down."""
        params = {
            "gateway_id": gateway_id,
            "company_id": self.company_id,
            "now": now,
            "due": now - cooldown,
        }
        return bool(await run(self.session, _CLAIM_PROBE, params))

    async def success_rates(
        self, gateway_ids: Sequence[str], since: datetime, newest: int
    ) -> dict[str, SuccessRate]:
        """Per gateway, its newest `newest` finished attempts since `since`: how many
        succeeded. Bounded per gateway, so a busy gateway costs no more than a quiet one."""
        statement = text(
            """
            SELECT g.id, count(*) FILTER (WHERE a.status = 'succeeded'), count(a.status)
            FROM unnest(CAST(:ids AS varchar[])) AS g(id)
            LEFT JOIN LATERAL (
                SELECT status FROM payment_attempts
                WHERE gateway_id = g.id AND company_id = :company_id
                  AND created_at >= :since AND status IN ('succeeded', 'failed')
                ORDER BY created_at DESC LIMIT :newest
            ) a ON true
            GROUP BY g.id
            """
        )
        params = {
            "ids": list(gateway_ids),
            "company_id": self.company_id,
            "since": since,
            "newest": newest,
        }
        rows = await self.session.execute(statement, params)
        return {row[0]: SuccessRate(int(row[1]), int(row[2])) for row in rows}


async def count_rules(session: AsyncSession, company_id: str) -> int:
    statement = select(func.count()).where(RoutingRule.company_id == company_id)
    return int((await session.execute(statement)).scalar_one())
