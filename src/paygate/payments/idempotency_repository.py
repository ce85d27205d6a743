"""Idempotency keys' rows: an API payment's claim of its key, and the answer kept for it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import make_transient_to_detached

from paygate.kit.sql import HotStatement, run
from paygate.payments.models import IdempotencyKey

CLAIM = (
    insert(IdempotencyKey)
    .values(
        company_id=bindparam("company_id"),
        key=bindparam("key"),
        request_hash=bindparam("request_hash"),
        expires_at=bindparam("expires_at"),
    )
    .on_conflict_do_nothing(index_elements=["company_id", "key"])
    .returning(IdempotencyKey.id)
)
_CLAIM_KEY = HotStatement(CLAIM)


def claim_params(
    company_id: str, key: str, request_hash: str, expires_at: datetime
) -> dict[str, object]:
    """The parameters of `CLAIM` (alone, or inside the invoice-locking statement)."""
    return {
        "company_id": company_id,
        "key": key,
        "request_hash": request_hash,
        "expires_at": expires_at,
    }


class IdempotencyRepository:
    def __init__(self, session: AsyncSession, company_id: str) -> None:
        self.session = session
        self.company_id = company_id

    async def reserve(self, key: str, request_hash: str, expires_at: datetime) -> int | None:
        """Claim `key` for this request: the claim's row id, None when it is taken."""
        params = claim_params(self.company_id, key, request_hash, expires_at)
        rows = await run(self.session, _CLAIM_KEY, params)
        return int(rows[0].id) if rows else None

    async def get(self, key: str) -> IdempotencyKey | None:
        statement = select(IdempotencyKey).where(
            IdempotencyKey.company_id == self.company_id, IdempotencyKey.key == key
        )
        return (await self.session.execute(statement)).scalar_one_or_none()

    def stage_answer(
        self, claim_id: int, status: int, body: dict[str, Any], completed_at: datetime
    ) -> None:
        """Keep the first answer, written with the rest of the unit of work
        (`write_together`): the claim's row, known by id, is changed without being read."""
        row = IdempotencyKey(id=claim_id)
        make_transient_to_detached(row)
        self.session.add(row)
        row.response_status = status
        row.response_body = body
        row.completed_at = completed_at
