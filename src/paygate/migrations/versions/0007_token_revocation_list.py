"""token revocation list

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-28 16:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "revoked_tokens",
        sa.Column("identifier", sa.String(length=64), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("identifier", name=op.f("pk_revoked_tokens")),
    )
    op.create_index(
        op.f("ix_revoked_tokens_expires_at"), "revoked_tokens", ["expires_at"], unique=False
    )
    # Requests stop checking auth_sessions.revoked_at and check this list instead: carry over
    # the sessions ended recently enough that their access tokens may still be unexpired
    # (access tokens live at most a day, see access_token_ttl_seconds).
    op.execute(
        "INSERT INTO revoked_tokens (identifier, expires_at)"
        " SELECT id, now() + interval '1 day' FROM auth_sessions"
        " WHERE revoked_at > now() - interval '1 day'"
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_revoked_tokens_expires_at"), table_name="revoked_tokens")
    op.drop_table("revoked_tokens")
