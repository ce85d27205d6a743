"""received webhooks' jobs wake the worker by polling, not one NOTIFY each

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 02:40:00.000000

Procrastinate's trigger sends a NOTIFY for every job inserted. PostgreSQL serializes the
commits of notifying transactions (one lock, held through the commit's WAL flush), so at a
few hundred webhooks a second the receivers waited on each other. Jobs of the
`webhooks_received` queue (processing received webhooks) are inserted without it; the
worker polls for them (paygate.jobs, JOB_POLLING_SECONDS). docs/decisions.md section 25.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TRIGGER = "procrastinate_jobs_notify_queue_job_inserted_v1"


def _trigger(condition: str) -> None:
    op.execute(f"DROP TRIGGER IF EXISTS {TRIGGER} ON procrastinate_jobs")
    op.execute(
        f"CREATE TRIGGER {TRIGGER} AFTER INSERT ON procrastinate_jobs"
        f" FOR EACH ROW WHEN ({condition})"
        " EXECUTE PROCEDURE procrastinate_notify_queue_job_inserted_v1()"
    )


def upgrade() -> None:
    _trigger(
        "new.status = 'todo'::procrastinate_job_status AND new.queue_name <> 'webhooks_received'"
    )


def downgrade() -> None:
    _trigger("new.status = 'todo'::procrastinate_job_status")
