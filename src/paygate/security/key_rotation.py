"""Master key rotation as a job an owner starts: re-wrap the company's data keys.

Decision (docs/security.md, "Key management"): an owner's run is company-scoped. It
re-wraps only that company's gateway configurations and shows only their failures, so
one tenant can neither trigger work on another's rows nor learn anything about them.
Re-wrapping every company at once stays an operator action (`paygate keys rotate`).
Both use the one implementation, `gateways.resealing.rewrap_all`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import structlog
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.db import Database
from paygate.gateways.repository import count_by_key_id
from paygate.gateways.resealing import rewrap_all
from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.errors import conflict
from paygate.kit.ids import new_id
from paygate.kit.repository import TenantRepository
from paygate.security import audit
from paygate.security.crypto import Keyring
from paygate.security.models import KeyRotation

logger = structlog.get_logger(__name__)

TASK_NAME = "security:rewrap_company_keys"
QUEUE = "maintenance"
# A running run whose job has not moved for this long was abandoned (its worker died).
ABANDONED_AFTER = timedelta(minutes=10)


class KeyRotationRepository(TenantRepository[KeyRotation]):
    model = KeyRotation
    what = "key rotation"

    async def latest(self) -> KeyRotation | None:
        statement = self.scoped().order_by(KeyRotation.started_at.desc()).limit(1)
        return (await self.session.execute(statement)).scalar_one_or_none()

    async def running(self) -> KeyRotation | None:
        statement = self.scoped().where(KeyRotation.status == "running").with_for_update()
        return (await self.session.execute(statement)).scalar_one_or_none()


@dataclass(frozen=True)
class KeyUsage:
    key_id: str
    configurations: int
    state: str  # primary, configured, missing


@dataclass(frozen=True)
class KeysOverview:
    primary_key_id: str
    usage: list[KeyUsage]
    to_rewrap: int


class KeyRotationService:
    def __init__(self, session: AsyncSession, keyring: Keyring, auth: AuthContext) -> None:
        self.session = session
        self.keyring = keyring
        self.auth = auth
        self.rotations = KeyRotationRepository(session, auth.company_id)

    async def overview(self) -> KeysOverview:
        counts = await count_by_key_id(self.session, self.auth.company_id)
        usage = []
        for key_id in sorted(set(counts) | {self.keyring.primary_key_id}):
            if key_id == self.keyring.primary_key_id:
                state = "primary"
            elif key_id in self.keyring.key_ids:
                state = "configured"
            else:
                state = "missing"
            usage.append(KeyUsage(key_id, counts.get(key_id, 0), state))
        to_rewrap = sum(n for k, n in counts.items() if k != self.keyring.primary_key_id)
        return KeysOverview(self.keyring.primary_key_id, usage, to_rewrap)

    async def get(self, rotation_id: str) -> KeyRotation:
        return await self.rotations.get(rotation_id)

    async def latest(self) -> KeyRotation | None:
        return await self.rotations.latest()

    async def start(self) -> KeyRotation:
        """Record a run and defer its job in this transaction; one run at a time."""
        now = utcnow()
        running = await self.rotations.running()
        if running is not None:
            if now - running.progressed_at < ABANDONED_AFTER:
                raise conflict(
                    f"A re-wrap is already running ({running.id}); wait for it to finish."
                )
            await self._finish(running, "failed", now, "Abandoned: its job stopped moving.")
            await audit.record_by(
                self.session,
                self.auth,
                action="keys.rotation_failed",
                object_type="key_rotation",
                object_id=running.id,
                outcome="failure",
                detail=running.detail,
            )
        overview = await self.overview()
        rotation = KeyRotation(
            id=new_id("krot"),
            company_id=self.auth.company_id,
            started_by_type=self.auth.actor_type,
            started_by_id=self.auth.actor_id,
            started_by=self.auth.actor_label,
            started_at=now,
            progressed_at=now,
            target_key_id=self.keyring.primary_key_id,
            status="running",
            total=overview.to_rewrap,
            done=0,
            failed=0,
            failed_gateway_ids=[],
        )
        try:
            async with self.session.begin_nested():
                await self.rotations.add(rotation)
        except IntegrityError:  # another request started one a moment ago
            raise conflict("A re-wrap is already running; wait for it to finish.") from None
        await audit.record_by(
            self.session,
            self.auth,
            action="keys.rotation_started",
            object_type="key_rotation",
            object_id=rotation.id,
            detail=(
                f"Re-wrap {rotation.total} gateway configurations under master key "
                f"{rotation.target_key_id}."
            ),
        )
        if rotation.total == 0:
            # Nothing under an older key: no job to wait for.
            await self._finish(
                rotation,
                "finished",
                now,
                f"Nothing to re-wrap: every configuration is under {rotation.target_key_id}.",
            )
            await audit.record_by(
                self.session,
                self.auth,
                action="keys.rotation_finished",
                object_type="key_rotation",
                object_id=rotation.id,
                detail=rotation.detail,
            )
            return rotation
        await defer_in_transaction(self.session, TASK_NAME, queue=QUEUE, rotation_id=rotation.id)
        return rotation

    async def _finish(
        self, rotation: KeyRotation, status: str, now: datetime, detail: str | None
    ) -> None:
        rotation.status = status
        rotation.finished_at = now
        rotation.progressed_at = now
        rotation.detail = detail
        await self.session.flush()


def starter_of(rotation: KeyRotation) -> audit.Actor:
    return audit.Actor(rotation.started_by_type, rotation.started_by_id, rotation.started_by)


async def run_rotation(
    database: Database, keyring: Keyring, rotation_id: str, *, batch_size: int = 100
) -> None:
    """The job: re-wrap the run's company, recording progress after each batch.

    Idempotent: a run no longer `running` is left alone, and re-wrapping a key already
    under the primary is a no-op, so a retried job just carries on.
    """
    async with database.transaction() as session:
        rotation = await session.get(KeyRotation, rotation_id)
        if rotation is None or rotation.status != "running":
            return
        company_id = rotation.company_id
        actor = starter_of(rotation)
        target = rotation.target_key_id
    if target != keyring.primary_key_id:
        await _conclude(
            database,
            rotation_id,
            failed_ids=(),
            remaining=0,
            error=(
                f"The worker's primary master key is {keyring.primary_key_id}, not {target}: "
                "give every paygate process the same PAYGATE_MASTER_KEYS, then start again."
            ),
        )
        return
    failed: tuple[str, ...] = ()
    remaining = 0
    try:
        async for step in rewrap_all(
            database, keyring, company_id=company_id, actor=actor, batch_size=batch_size
        ):
            failed, remaining = step.failed_ids, step.remaining
            async with database.transaction() as session:
                row = await session.get(KeyRotation, rotation_id, with_for_update=True)
                assert row is not None
                row.done = step.rewrapped
                row.failed = len(step.failed_ids)
                row.failed_gateway_ids = list(step.failed_ids)
                row.total = max(row.total, step.rewrapped + len(step.failed_ids) + remaining)
                row.progressed_at = utcnow()
    except Exception as exc:
        logger.exception("key_rotation_crashed", rotation_id=rotation_id)
        await _conclude(
            database,
            rotation_id,
            failed_ids=failed,
            remaining=remaining,
            error=f"The job stopped: {type(exc).__name__}.",
        )
        raise
    await _conclude(database, rotation_id, failed_ids=failed, remaining=remaining, error=None)


async def _conclude(
    database: Database,
    rotation_id: str,
    *,
    failed_ids: tuple[str, ...],
    remaining: int,
    error: str | None,
) -> None:
    async with database.transaction() as session:
        row = await session.get(KeyRotation, rotation_id, with_for_update=True)
        assert row is not None
        problems = []
        if error:
            problems.append(error)
        if failed_ids:
            problems.append(
                f"{len(failed_ids)} configurations could not be decrypted: "
                f"{', '.join(failed_ids)}. Re-enter their credentials."
            )
        if remaining:
            problems.append(f"{remaining} configurations were busy; start it again.")
        now = utcnow()
        row.status = "failed" if problems else "finished"
        row.finished_at = now
        row.progressed_at = now
        row.detail = " ".join(problems) or None
        if problems:
            logger.error(
                "key_rotation_failed",
                rotation_id=row.id,
                company_id=row.company_id,
                target_key_id=row.target_key_id,
                failed=len(failed_ids),
                failed_gateway_ids=list(failed_ids),
                remaining=remaining,
            )
        else:
            logger.info("key_rotation_finished", rotation_id=row.id, rewrapped=row.done)
        await audit.record(
            session,
            company_id=row.company_id,
            actor=starter_of(row),
            origin=None,
            action="keys.rotation_failed" if problems else "keys.rotation_finished",
            object_type="key_rotation",
            object_id=row.id,
            outcome="failure" if problems else "success",
            changes={"failed_gateway_ids": {"before": None, "after": list(failed_ids)}}
            if failed_ids
            else None,
            detail=row.detail or f"{row.done} configurations re-wrapped under {row.target_key_id}.",
        )
