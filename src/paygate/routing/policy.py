"""A company's retry policy: attempts per payment, soft declines retried, when to fail over."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.kit.clock import utcnow
from paygate.kit.errors import FieldError, validation_failed
from paygate.routing.models import RetryPolicy
from paygate.routing.repository import RoutingRepository
from paygate.routing.schemas import RetryPolicyIn
from paygate.routing.status_map import (
    DEFAULT_RETRY_DECLINE_CODES,
    HARD_DECLINE_CODES,
    SOFT_DECLINE_CODES,
)
from paygate.security import audit


@dataclass(frozen=True)
class Policy:
    """The policy in force; `DEFAULT_POLICY` until the company saves its own."""

    max_attempts: int = 3
    retry_decline_codes: tuple[str, ...] = DEFAULT_RETRY_DECLINE_CODES
    failover_customer_present: bool = True
    failover_api: bool = True
    breaker_failures: int = 5
    breaker_cooldown_seconds: int = 60
    updated_at: datetime | None = None

    @property
    def breaker_cooldown(self) -> timedelta:
        return timedelta(seconds=self.breaker_cooldown_seconds)

    def fails_over(self, *, customer_present: bool) -> bool:
        return self.failover_customer_present if customer_present else self.failover_api

    def snapshot(self) -> dict[str, object]:
        values = asdict(self)
        values.pop("updated_at")
        values["retry_decline_codes"] = list(self.retry_decline_codes)
        return values


DEFAULT_POLICY = Policy()


def policy_of(row: RetryPolicy | None) -> Policy:
    if row is None:
        return DEFAULT_POLICY
    return Policy(
        max_attempts=row.max_attempts,
        retry_decline_codes=tuple(row.retry_decline_codes),
        failover_customer_present=row.failover_customer_present,
        failover_api=row.failover_api,
        breaker_failures=row.breaker_failures,
        breaker_cooldown_seconds=row.breaker_cooldown_seconds,
        updated_at=row.updated_at,
    )


async def load_policy(session: AsyncSession, company_id: str) -> Policy:
    return policy_of(await RoutingRepository(session, company_id).policy())


def _check_codes(codes: list[str]) -> tuple[str, ...]:
    errors: list[FieldError] = []
    for index, code in enumerate(codes):
        if code in HARD_DECLINE_CODES:
            errors.append(
                FieldError(
                    f"retry_decline_codes.{index}",
                    "is a hard decline: it is never retried at another gateway",
                    "hard_decline",
                )
            )
        elif code not in SOFT_DECLINE_CODES:
            errors.append(
                FieldError(
                    f"retry_decline_codes.{index}",
                    f"is not a soft decline code (one of: {', '.join(SOFT_DECLINE_CODES)})",
                    "unknown_code",
                )
            )
    if errors:
        raise validation_failed(errors)
    return tuple(dict.fromkeys(codes))


class RetryPolicyService:
    def __init__(self, session: AsyncSession, auth: AuthContext) -> None:
        self.session = session
        self.auth = auth
        self.routing = RoutingRepository(session, auth.company_id)

    async def get(self) -> Policy:
        return policy_of(await self.routing.policy())

    async def update(self, request: RetryPolicyIn) -> Policy:
        codes = _check_codes(request.retry_decline_codes)
        row = await self.routing.policy(for_update=True)
        before = policy_of(row)
        if row is None:
            row = RetryPolicy(company_id=self.auth.company_id)
            self.session.add(row)
        row.max_attempts = request.max_attempts
        row.retry_decline_codes = list(codes)
        row.failover_customer_present = request.failover_customer_present
        row.failover_api = request.failover_api
        row.breaker_failures = request.breaker_failures
        row.breaker_cooldown_seconds = request.breaker_cooldown_seconds
        row.updated_at = utcnow()
        await self.session.flush()
        after = policy_of(row)
        await audit.record_by(
            self.session,
            self.auth,
            action="retry_policy.updated",
            object_type="retry_policy",
            object_id=self.auth.company_id,
            changes=audit.diff(before.snapshot(), after.snapshot()),
        )
        return after
