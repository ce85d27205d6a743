"""received webhooks not yet attempted, found oldest first by their job

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-07 05:45:00.000000

The job that processes received webhooks claims the oldest verified event that is pending
and never attempted (docs/decisions.md section 26). The due index also holds events
waiting for a retry, which sort ahead of new ones: during a gateway's outage each claim
would read past every one of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_webhook_events_received",
        "webhook_events",
        ["received_at"],
        postgresql_where=sa.text("status = 'pending' AND attempts = 0 AND verified"),
    )


def downgrade() -> None:
    op.drop_index("ix_webhook_events_received", table_name="webhook_events")
