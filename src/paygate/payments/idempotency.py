"""Idempotency keys with Stripe's semantics.

The same key with the same request answers the first response again (status and body);
with a different request it is a 422; while the first request runs it is a 409. Keys are
per company and kept at least 24 hours.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.kit.clock import utcnow
from paygate.kit.errors import Problem
from paygate.payments.idempotency_repository import IdempotencyRepository
from paygate.payments.models import IdempotencyKey
from paygate.payments.repository import PaymentRepository

KEEP_FOR = timedelta(hours=24)
MAX_KEY_LENGTH = 255


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    replayed: bool = False


def request_fingerprint(path: str, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise Problem(
            400,
            "idempotency-key-required",
            "Idempotency-Key required",
            "Send an Idempotency-Key header (a unique value per operation, e.g. a UUID) "
            "so a retry never charges twice.",
        )
    if len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise Problem(
            400,
            "bad-idempotency-key",
            "Bad Idempotency-Key",
            f"Use at most {MAX_KEY_LENGTH} printable characters.",
        )
    return key


@dataclass(frozen=True)
class Claim:
    """One request's Idempotency-Key, claimed inside the transaction that starts its work."""

    company_id: str
    key: str
    fingerprint: str


class Replay(Exception):  # control flow, not an error
    """The key was used before: answer this instead of doing the work again."""

    def __init__(self, answer: Answer) -> None:
        super().__init__("idempotent replay")
        self.answer = answer


def _earlier_answer(existing: IdempotencyKey, fingerprint: str) -> Answer:
    if existing.request_hash != fingerprint:
        raise Problem(
            422,
            "idempotency-key-reused",
            "Idempotency-Key reused",
            "This Idempotency-Key was used for a different request.",
        )
    if existing.response_status is None or existing.response_body is None:
        raise Problem(
            409,
            "idempotency-in-progress",
            "Request in progress",
            "A request with this Idempotency-Key is still running; retry in a moment.",
        )
    return Answer(existing.response_status, existing.response_body, replayed=True)


async def claim_in(session: AsyncSession, claim: Claim, invoice_id: str) -> int | None:
    """Claim the key in the caller's transaction, before its first write, and lock the
    invoice the work pays in the same round trip (404 if the company has no such invoice);
    the claim's row id (None in the rare case the key was taken by a request that then
    rolled back).

    Raises Replay with the first answer, or the 409/422 Problem, when the key is taken. The
    claim commits with the work it guards: when that transaction rolls back (a refused
    request), the key is free again for a corrected retry. A concurrent request with the
    same key waits on the uncommitted claim, then sees it taken.
    """
    claim_id = await PaymentRepository(session, claim.company_id).claim_key_and_lock_invoice(
        claim.key, claim.fingerprint, utcnow() + KEEP_FOR, invoice_id
    )
    if claim_id is not None:
        return claim_id
    existing = await IdempotencyRepository(session, claim.company_id).get(claim.key)
    if existing is not None:
        raise Replay(_earlier_answer(existing, claim.fingerprint))
    return None


def answer_in(session: AsyncSession, claim: Claim, claim_id: int | None, answer: Answer) -> None:
    """Store the first answer in the caller's transaction (the one that settles the work),
    with the rest of what it writes."""
    if claim_id is not None:
        IdempotencyRepository(session, claim.company_id).stage_answer(
            claim_id, answer.status, answer.body, utcnow()
        )


async def run_once(
    database: Database,
    company_id: str,
    key: str,
    fingerprint: str,
    operation: Callable[[], Awaitable[Answer]],
) -> Answer:
    async with database.transaction() as session:
        keys = IdempotencyRepository(session, company_id)
        claimed = await keys.reserve(key, fingerprint, utcnow() + KEEP_FOR)
        existing = None if claimed is not None else await keys.get(key)
    if existing is not None:
        return _earlier_answer(existing, fingerprint)
    try:
        answer = await operation()
    except Problem:
        # Refused before anything was written: the key is free for a corrected retry.
        async with database.transaction() as session:
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.company_id == company_id, IdempotencyKey.key == key
                )
            )
        raise
    async with database.transaction() as session:
        stored = await IdempotencyRepository(session, company_id).get(key)
        if stored is not None:
            stored.response_status = answer.status
            stored.response_body = answer.body
            stored.completed_at = utcnow()
    return answer


async def purge_expired_keys(session: AsyncSession) -> int:
    """Delete keys kept their 24 hours; returns how many went."""
    result = await session.execute(
        delete(IdempotencyKey).where(IdempotencyKey.expires_at < utcnow())
    )
    return int(getattr(result, "rowcount", 0) or 0)
