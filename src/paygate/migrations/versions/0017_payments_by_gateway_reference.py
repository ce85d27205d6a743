"""payments found by the gateway's reference (webhook processing)

Revision ID: 0017
Revises: 0012
Create Date: 2026-12-06 21:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0012"  # the head: 0012 came after 0016
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # A gateway's webhook names the payment by the gateway's own id: without this index
    # each event read every payment of the gateway.
    op.create_index(
        "ix_payments_gateway_reference",
        "payments",
        ["gateway_reference"],
        postgresql_where=sa.text("gateway_reference IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_payments_gateway_reference", table_name="payments")
