"""the admin shell: object names in the audit log, gateways' public labels

Revision ID: 0012
Revises: 0016
Create Date: 2026-12-06 18:30:00.000000

- `audit_entries.object_name`: the object's name as it was when the entry was written (a
  gateway's name, an API key's name, a member's email), so a deleted or renamed object still
  reads by name. The hash covers it: an entry with a name is serialized as version 2 (version
  1 plus the name); an entry without one keeps version 1, so every existing chain stays valid
  without a re-hash.
- `gateways.public_label`: what customers see on the payment page (the internal name is
  for the team only).
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The fields of version 1 (migration 0006), then, in version 2, the object's name.
AUDIT_ENTRY_HASH_V2 = """
CREATE OR REPLACE FUNCTION audit_entry_hash(e audit_entries) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to((CASE WHEN e.object_name IS NULL THEN jsonb_build_array(
        1,
        e.seq, e.id, e.company_id,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor_type, e.actor_id, e.actor_label, e.action, e.object_type, e.object_id,
        e.outcome, e.ip, e.user_agent, e.request_id, e.changes, e.detail,
        encode(e.prev_hash, 'hex')
    ) ELSE jsonb_build_array(
        2,
        e.seq, e.id, e.company_id,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor_type, e.actor_id, e.actor_label, e.action, e.object_type, e.object_id,
        e.outcome, e.ip, e.user_agent, e.request_id, e.changes, e.detail,
        encode(e.prev_hash, 'hex'),
        e.object_name
    ) END)::text, 'UTF8'))
$$;
"""

AUDIT_ENTRY_HASH_V1 = """
CREATE OR REPLACE FUNCTION audit_entry_hash(e audit_entries) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(jsonb_build_array(
        1,
        e.seq, e.id, e.company_id,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor_type, e.actor_id, e.actor_label, e.action, e.object_type, e.object_id,
        e.outcome, e.ip, e.user_agent, e.request_id, e.changes, e.detail,
        encode(e.prev_hash, 'hex')
    )::text, 'UTF8'))
$$;
"""


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("object_name", sa.String(length=320), nullable=True))
    op.execute(AUDIT_ENTRY_HASH_V2)
    op.add_column("gateways", sa.Column("public_label", sa.String(length=60), nullable=True))


def downgrade() -> None:
    op.drop_column("gateways", "public_label")
    # Entries written with a name no longer verify after this: their name is gone.
    op.execute(AUDIT_ENTRY_HASH_V1)
    op.drop_column("audit_entries", "object_name")
