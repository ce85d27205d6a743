"""The failed transaction log: every failed payment attempt and refund, in one place.

It reads what the payment path writes (`payment_attempts` and `refunds` with their
normalized code, the gateway's own code and message, and whether the failure was a
decline or technical), newest first, paged by a cursor over (time, id).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import literal, null, select, tuple_, union_all
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.gateways.models import Gateway
from paygate.kit.errors import FieldError, validation_failed
from paygate.kit.repository import apply_filters
from paygate.payments.models import Payment, PaymentAttempt, Refund

_CURSOR = re.compile(r"^(\d{1,17})\.([a-z]{2,5}_[0-9A-Z]{26})$")


@dataclass(frozen=True)
class FailureFilters:
    gateway_id: str | None = None
    type: str | None = None  # payment | refund
    failure_kind: str | None = None  # decline | technical
    code: str | None = None  # the normalized code (card_declined, outcome_unknown, ...)
    payment_id: str | None = None
    invoice_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class Failure:
    id: str  # the attempt's or the refund's id
    type: str
    occurred_at: datetime
    payment_id: str
    refund_id: str | None
    invoice_id: str
    gateway_id: str
    gateway_name: str
    amount: int
    currency: str
    status: str
    code: str | None
    gateway_code: str | None
    message: str | None
    failure_kind: str


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(occurred_at: datetime, row_id: str) -> str:
    # Whole microseconds, as PostgreSQL stores them: no float rounding between pages.
    return f"{(occurred_at - _EPOCH) // _MICROSECOND}.{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """The (time, id) a cursor names; a 422 for anything that is not one of ours."""
    match = _CURSOR.match(cursor)
    if match is None:
        raise validation_failed([FieldError("cursor", "is not a cursor this list gave out")])
    return _EPOCH + int(match.group(1)) * _MICROSECOND, match.group(2)


class FailureLogRepository:
    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    def _attempts(self, f: FailureFilters) -> Any:
        # Any: the two parts' column tuples differ in type, not in shape (a UNION of both).
        statement: Any = (
            select(
                PaymentAttempt.id.label("id"),
                literal("payment").label("type"),
                PaymentAttempt.created_at.label("occurred_at"),
                PaymentAttempt.payment_id.label("payment_id"),
                null().label("refund_id"),
                Payment.invoice_id.label("invoice_id"),
                PaymentAttempt.gateway_id.label("gateway_id"),
                Payment.amount.label("amount"),
                Payment.currency.label("currency"),
                PaymentAttempt.status.label("status"),
                PaymentAttempt.error_code.label("code"),
                PaymentAttempt.gateway_code.label("gateway_code"),
                PaymentAttempt.error_message.label("message"),
                PaymentAttempt.failure_kind.label("failure_kind"),
            )
            .join(Payment, Payment.id == PaymentAttempt.payment_id)
            .where(
                PaymentAttempt.company_id == self.company_id,
                PaymentAttempt.failure_kind.is_not(None),
            )
        )
        return apply_filters(
            statement,
            [
                (f.gateway_id, lambda v: PaymentAttempt.gateway_id == v),
                (f.failure_kind, lambda v: PaymentAttempt.failure_kind == v),
                (f.code, lambda v: PaymentAttempt.error_code == v),
                (f.payment_id, lambda v: PaymentAttempt.payment_id == v),
                (f.invoice_id, lambda v: Payment.invoice_id == v),
                (f.since, lambda v: PaymentAttempt.created_at >= v),
                (f.until, lambda v: PaymentAttempt.created_at < v),
            ],
        )

    def _refunds(self, f: FailureFilters) -> Any:
        statement: Any = (
            select(
                Refund.id.label("id"),
                literal("refund").label("type"),
                Refund.created_at.label("occurred_at"),
                Refund.payment_id.label("payment_id"),
                Refund.id.label("refund_id"),
                Payment.invoice_id.label("invoice_id"),
                Payment.gateway_id.label("gateway_id"),
                Refund.amount.label("amount"),
                Refund.currency.label("currency"),
                Refund.status.label("status"),
                Refund.failure_code.label("code"),
                Refund.gateway_code.label("gateway_code"),
                Refund.failure_message.label("message"),
                Refund.failure_kind.label("failure_kind"),
            )
            .join(Payment, Payment.id == Refund.payment_id)
            .where(Refund.company_id == self.company_id, Refund.failure_kind.is_not(None))
        )
        return apply_filters(
            statement,
            [
                (f.gateway_id, lambda v: Payment.gateway_id == v),
                (f.failure_kind, lambda v: Refund.failure_kind == v),
                (f.code, lambda v: Refund.failure_code == v),
                (f.payment_id, lambda v: Refund.payment_id == v),
                (f.invoice_id, lambda v: Payment.invoice_id == v),
                (f.since, lambda v: Refund.created_at >= v),
                (f.until, lambda v: Refund.created_at < v),
            ],
        )

    async def search(
        self, filters: FailureFilters, limit: int, cursor: str | None
    ) -> tuple[list[Failure], str | None]:
        parts = []
        if filters.type in (None, "payment"):
            parts.append(self._attempts(filters))
        if filters.type in (None, "refund"):
            parts.append(self._refunds(filters))
        if cursor:
            at, row_id = decode_cursor(cursor)
            parts = [
                p.where(
                    tuple_(p.selected_columns.occurred_at, p.selected_columns.id) < (at, row_id)
                )
                for p in parts
            ]
        # Each part is cut to one page first (each has its index), then merged.
        parts = [
            p.order_by(p.selected_columns.occurred_at.desc(), p.selected_columns.id.desc()).limit(
                limit + 1
            )
            for p in parts
        ]
        merged = union_all(*[p.subquery().select() for p in parts]).subquery()
        statement = (
            select(merged)
            .order_by(merged.c.occurred_at.desc(), merged.c.id.desc())
            .limit(limit + 1)
        )
        rows = (await self.session.execute(statement)).mappings().all()
        names = await self._gateway_names({row["gateway_id"] for row in rows})
        failures = [
            Failure(**{**row, "gateway_name": names.get(row["gateway_id"], "")})
            for row in rows[:limit]
        ]
        next_cursor = None
        if len(rows) > limit:
            last = failures[-1]
            next_cursor = encode_cursor(last.occurred_at, last.id)
        return failures, next_cursor

    async def _gateway_names(self, ids: Sequence[str] | set[str]) -> dict[str, str]:
        if not ids:
            return {}
        rows = await self.session.execute(
            select(Gateway.id, Gateway.name).where(
                Gateway.company_id == self.company_id, Gateway.id.in_(list(ids))
            )
        )
        return dict(rows.tuples().all())
