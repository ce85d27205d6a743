"""Batch jobs that re-seal every gateway's stored secrets, one small transaction per batch:
wiping previous secrets whose grace has ended (the sweeper), and re-wrapping data keys under
the primary master key (key rotation, from the owner's job or the operator's CLI)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.db import Database
from paygate.gateways.connection import envelope_of
from paygate.gateways.credentials import Envelope, accepted_previous_until, next_expiry
from paygate.gateways.models import Gateway
from paygate.gateways.repository import (
    count_by_key_id,
    lock_batch_not_under,
    lock_batch_with_expired_previous,
)
from paygate.kit.clock import utcnow
from paygate.security import audit
from paygate.security.crypto import Keyring, KeyringError

logger = structlog.get_logger(__name__)


async def wipe_expired_previous_credentials(
    database: Database, keyring: Keyring, *, now: datetime | None = None, batch_size: int = 100
) -> int:
    """Wipe every previous secret whose grace has ended; returns how many gateways changed.

    One small transaction per batch; a gateway that cannot be decrypted is reported (error
    log) and left alone: its current secrets must not be lost along with the old one.
    """
    moment = now or utcnow()
    unreadable: set[str] = set()
    wiped = 0
    while True:
        async with database.transaction() as session:
            batch = await lock_batch_with_expired_previous(
                session, moment, batch_size, exclude=unreadable
            )
            for gateway in batch:
                try:
                    envelope = envelope_of(gateway, keyring)
                except KeyringError:
                    unreadable.add(gateway.id)
                    continue
                _wipe_expired(gateway, envelope, keyring, moment)
                wiped += 1
                await audit.record(
                    session,
                    company_id=gateway.company_id,
                    actor=audit.SYSTEM,
                    origin=None,
                    action="gateway.previous_credentials_wiped",
                    object_type="gateway",
                    object_id=gateway.id,
                    object_name=gateway.name,
                    detail="The grace period of a replaced secret ended; it was wiped.",
                )
        if len(batch) < batch_size:
            return wiped


def _wipe_expired(gateway: Gateway, envelope: Envelope, keyring: Keyring, now: datetime) -> None:
    hints = {name: dict(hint) for name, hint in (gateway.secret_hints or {}).items()}
    kept: dict[str, str] = {}
    for name, hint in hints.items():
        if name in envelope.previous and accepted_previous_until(gateway, name, now):
            kept[name] = envelope.previous[name]
        else:
            hint.pop("previous_valid_until", None)
    sealed = keyring.seal(Envelope(envelope.current, kept).plaintext(), gateway.aad())
    gateway.key_id = sealed.key_id
    gateway.wrapped_data_key = sealed.wrapped_data_key
    gateway.secret_ciphertext = sealed.ciphertext
    gateway.secret_hints = hints
    gateway.previous_credentials_expire_at = next_expiry(hints)


@dataclass(frozen=True)
class RotationProgress:
    rewrapped: int
    # Still under another key and not failed (busy rows another transaction held).
    remaining: int
    # Configurations that could not be re-wrapped, so far (their ids only).
    failed_ids: tuple[str, ...] = ()


async def rewrap_all(
    database: Database,
    keyring: Keyring,
    *,
    company_id: str | None = None,
    actor: audit.Actor = audit.SYSTEM,
    batch_size: int = 100,
) -> AsyncIterator[RotationProgress]:
    """Re-wrap every data key under the primary master key, one small transaction per batch.

    `company_id` limits it to one company (the owner's job); None is every company (the
    operator's CLI). Rows are locked only while their batch is re-wrapped, so paygate keeps
    serving. A data key that cannot be unwrapped is never skipped silently: it is logged
    at error level, audited for its company, and reported in `failed_ids`.
    """
    done = 0
    failed: list[str] = []
    while True:
        async with database.transaction() as session:
            batch = await lock_batch_not_under(
                session, keyring.primary_key_id, batch_size, company_id=company_id, exclude=failed
            )
            for gateway in batch:
                try:
                    keyring.rewrap_row(gateway)
                except KeyringError as exc:
                    failed.append(gateway.id)
                    await _report_unwrap_failure(session, gateway, keyring, actor, str(exc))
                    continue
                done += 1
            counts = await count_by_key_id(session, company_id)
        under_other = sum(n for key_id, n in counts.items() if key_id != keyring.primary_key_id)
        yield RotationProgress(done, under_other - len(failed), tuple(failed))
        if not batch:
            return


async def _report_unwrap_failure(
    session: AsyncSession, gateway: Gateway, keyring: Keyring, actor: audit.Actor, reason: str
) -> None:
    logger.error(
        "key_rotation_unwrap_failed",
        gateway_id=gateway.id,
        company_id=gateway.company_id,
        key_id=gateway.key_id,
        target_key_id=keyring.primary_key_id,
        reason=reason,
    )
    await audit.record(
        session,
        company_id=gateway.company_id,
        actor=actor,
        origin=None,
        action="gateway.credentials_undecryptable",
        object_type="gateway",
        object_id=gateway.id,
        object_name=gateway.name,
        outcome="failure",
        detail=(
            f"Re-wrapping under master key {keyring.primary_key_id} failed: {reason}. "
            f"Restore master key {gateway.key_id} or re-enter the gateway's credentials."
        ),
    )
