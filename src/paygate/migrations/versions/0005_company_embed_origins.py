"""company embed origins

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-28 15:10:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "companies",
        sa.Column("embed_origins", postgresql.ARRAY(sa.String(length=200)), nullable=True),
    )


def downgrade() -> None:
    op.drop_column("companies", "embed_origins")
