"""The event log as the API and the pages see it: list and read a company's received
webhooks with their processing history, replay one, start and follow a bulk replay."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from paygate.accounts.auth import AuthContext
from paygate.db import Database
from paygate.gateways.repository import GatewayRepository
from paygate.kit.clock import utcnow
from paygate.kit.deferral import defer_in_transaction
from paygate.kit.errors import FieldError, Problem, conflict, validation_failed
from paygate.kit.ids import new_id
from paygate.kit.pagination import PageParams
from paygate.security import audit
from paygate.security.audit_actions import AuditAction
from paygate.security.audit_object_types import AuditObjectType
from paygate.security.crypto import Keyring
from paygate.settings import Settings
from paygate.webhooks.inbound.models import WebhookEvent, WebhookEventAttempt, WebhookReplay
from paygate.webhooks.inbound.processing import ProcessingContext
from paygate.webhooks.inbound.receive import QUEUE, TASK_NAME
from paygate.webhooks.inbound.replay import BULK_TASK_NAME, prepare_replay
from paygate.webhooks.inbound.repository import (
    EventFilters,
    WebhookEventRepository,
    WebhookReplayRepository,
)

# A running bulk replay whose job has not moved for this long was abandoned.
ABANDONED_AFTER = timedelta(minutes=10)
MAX_RANGE = timedelta(days=93)


@dataclass(frozen=True)
class EventWithHistory:
    event: WebhookEvent
    attempts: Sequence[WebhookEventAttempt]


class WebhookEventService:
    def __init__(
        self,
        session: AsyncSession,
        database: Database,
        keyring: Keyring,
        settings: Settings,
        auth: AuthContext,
    ) -> None:
        self.session = session
        self.auth = auth
        self.context = ProcessingContext(database, keyring, settings)
        self.events = WebhookEventRepository(session, auth.company_id)
        self.replays = WebhookReplayRepository(session, auth.company_id)

    # --- reading ---------------------------------------------------------------------

    async def search(
        self, filters: EventFilters, paging: PageParams
    ) -> tuple[Sequence[WebhookEvent], str | None]:
        return await self.events.search(filters, paging)

    async def get(self, event_id: str) -> EventWithHistory:
        event = await self.events.get(event_id)
        return EventWithHistory(event, await self.events.attempts(event.id))

    async def types_seen(self) -> list[str]:
        return await self.events.types_seen()

    # --- replaying one ----------------------------------------------------------------

    async def replay(self, event_id: str) -> WebhookEvent:
        """Re-verify with the current secrets and process again, in a job (202)."""
        event = await self.events.get(event_id, for_update=True)
        prepared = await prepare_replay(self.context, self.session, event)
        if prepared.unavailable:
            raise Problem(
                503,
                "webhook-verification-unavailable",
                "Verification unavailable",
                f"The event was not replayed: {prepared.reason}. Try again later.",
            )
        if not prepared.ok:
            raise Problem(
                409,
                "webhook-replay-refused",
                "Replay refused",
                f"The event cannot be replayed: {prepared.reason}.",
            )
        await defer_in_transaction(
            self.session,
            TASK_NAME,
            queue=QUEUE,
            event_id=event.id,
            trigger="replay",
            actor=self.auth.actor_label,
        )
        await self._audit("webhook_event.replayed", "webhook_event", event.id, prepared.reason)
        return event

    # --- bulk replays -----------------------------------------------------------------

    async def start_bulk_replay(
        self, received_from: datetime, received_to: datetime, gateway_id: str | None
    ) -> WebhookReplay:
        """Replay every failed event received in [from, to), of one gateway or all."""
        if received_to <= received_from:
            raise validation_failed([FieldError("received_to", "must be after received_from")])
        if received_to - received_from > MAX_RANGE:
            raise validation_failed([FieldError("received_to", "spans more than 93 days")])
        if gateway_id is not None:
            await GatewayRepository(self.session, self.auth.company_id).get(gateway_id)
        now = utcnow()
        running = await self.replays.running()
        if running is not None:
            if now - running.progressed_at < ABANDONED_AFTER:
                raise conflict(f"A bulk replay is already running ({running.id}).")
            running.status, running.finished_at = "failed", now
            running.detail = "Abandoned: its job stopped moving."
            await self.session.flush()
        total = await self.events.count_failed(received_from, received_to, gateway_id)
        run = WebhookReplay(
            id=new_id("whr"),
            company_id=self.auth.company_id,
            gateway_id=gateway_id,
            received_from=received_from,
            received_to=received_to,
            status="running" if total else "finished",
            total=total,
            done=0,
            failed=0,
            started_by_type=self.auth.actor_type,
            started_by_id=self.auth.actor_id,
            started_by=self.auth.actor_label,
            started_at=now,
            progressed_at=now,
            finished_at=None if total else now,
            detail=None if total else "No failed events in this range.",
        )
        try:
            async with self.session.begin_nested():
                await self.replays.add(run)
        except IntegrityError:  # another request started one a moment ago
            raise conflict("A bulk replay is already running.") from None
        if total:
            await defer_in_transaction(self.session, BULK_TASK_NAME, queue=QUEUE, replay_id=run.id)
        scope = f"gateway {gateway_id}" if gateway_id else "every gateway"
        await self._audit(
            "webhook_event.bulk_replay_started",
            "webhook_replay",
            run.id,
            f"{total} failed events of {scope} received from {received_from.isoformat()} "
            f"to {received_to.isoformat()}.",
        )
        return run

    async def bulk_replay(self, replay_id: str) -> WebhookReplay:
        return await self.replays.get(replay_id)

    async def latest_bulk_replay(self) -> WebhookReplay | None:
        return await self.replays.latest()

    async def _audit(
        self, action: AuditAction, object_type: AuditObjectType, object_id: str, detail: str
    ) -> None:
        await audit.record_by(
            self.session,
            self.auth,
            action=action,
            object_type=object_type,
            object_id=object_id,
            detail=detail,
        )


def replay_percent(run: WebhookReplay) -> int:
    if run.total <= 0:
        return 100
    return min(100, round(100 * run.done / run.total))
