"""credential rotation: previous secrets' grace, key rotation runs

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-28 15:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "gateways",
        sa.Column("previous_credentials_expire_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index(
        "ix_gateways_previous_credentials_expire_at",
        "gateways",
        ["previous_credentials_expire_at"],
    )
    op.create_table(
        "key_rotations",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column(
            "company_id", sa.String(length=40), sa.ForeignKey("companies.id"), nullable=False
        ),
        sa.Column("started_by_type", sa.String(length=20), nullable=False),
        sa.Column("started_by_id", sa.String(length=40), nullable=True),
        sa.Column("started_by", sa.String(length=320), nullable=False),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column(
            "progressed_at",
            sa.DateTime(timezone=True),
            server_default=sa.func.now(),
            nullable=False,
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("target_key_id", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("failed_gateway_ids", postgresql.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
    )
    op.create_index("ix_key_rotations_company_id", "key_rotations", ["company_id"])
    op.create_index(
        "ux_key_rotations_running",
        "key_rotations",
        ["company_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )


def downgrade() -> None:
    op.drop_index("ux_key_rotations_running", table_name="key_rotations")
    op.drop_index("ix_key_rotations_company_id", table_name="key_rotations")
    op.drop_table("key_rotations")
    op.drop_index("ix_gateways_previous_credentials_expire_at", table_name="gateways")
    op.drop_column("gateways", "previous_credentials_expire_at")
