"""api key rotation and expiry notices

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28 15:45:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("rotated_from", sa.String(length=40), nullable=True))
    op.add_column("api_keys", sa.Column("replaced_by", sa.String(length=40), nullable=True))
    op.add_column(
        "api_keys",
        sa.Column("expiry_notice_sent_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_foreign_key(
        op.f("fk_api_keys_rotated_from_api_keys"), "api_keys", "api_keys", ["rotated_from"], ["id"]
    )
    op.create_foreign_key(
        op.f("fk_api_keys_replaced_by_api_keys"), "api_keys", "api_keys", ["replaced_by"], ["id"]
    )


def downgrade() -> None:
    op.drop_constraint(op.f("fk_api_keys_replaced_by_api_keys"), "api_keys", type_="foreignkey")
    op.drop_constraint(op.f("fk_api_keys_rotated_from_api_keys"), "api_keys", type_="foreignkey")
    op.drop_column("api_keys", "expiry_notice_sent_at")
    op.drop_column("api_keys", "replaced_by")
    op.drop_column("api_keys", "rotated_from")
