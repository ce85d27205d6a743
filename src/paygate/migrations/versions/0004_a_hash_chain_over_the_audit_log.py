"""a hash chain over the audit log

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 15:10:00.000000

Every audit entry carries its position in its chain (`seq`), the hash of the entry before
it (`prev_hash`) and its own hash: sha256 over a canonical serialization of its fields and
`prev_hash`. There is one chain per company (and one for entries of no company), so tenants
never wait on one another. A BEFORE INSERT trigger computes the three columns, so every
writer is covered, the ORM and the raw SQL that reserves a payment alike. `paygate audit
verify` recomputes the chains with the same function, `audit_entry_hash`: the one
definition of the serialization.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The canonical serialization: a JSON array (jsonb's text form is canonical: one spelling
# per value, object keys sorted), the time in UTC to the microsecond whatever the session's
# time zone, UTF-8 encoded. Changing it means a new function and a re-hash of every chain.
AUDIT_ENTRY_HASH = """
CREATE FUNCTION audit_entry_hash(e audit_entries) RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(convert_to(jsonb_build_array(
        1,  -- version of this serialization
        e.seq, e.id, e.company_id,
        to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
        e.actor_type, e.actor_id, e.actor_label, e.action, e.object_type, e.object_id,
        e.outcome, e.ip, e.user_agent, e.request_id, e.changes, e.detail,
        encode(e.prev_hash, 'hex')
    )::text, 'UTF8'))
$$;
"""

# Two-key advisory lock: the first key names the audit chains (ASCII "audi"), the second
# the company. A hash collision between two companies only makes them wait on each other.
AUDIT_ENTRIES_CHAIN = """
CREATE FUNCTION audit_entries_chain() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    last_seq bigint;
    last_hash bytea;
BEGIN
    -- Held to the end of the transaction: the next entry of this chain is written only
    -- once this one is committed (or rolled back), so it links to the right hash.
    PERFORM pg_advisory_xact_lock(1635083369, hashtext(coalesce(NEW.company_id, '')));
    IF NEW.company_id IS NULL THEN
        SELECT seq, hash INTO last_seq, last_hash FROM audit_entries
        WHERE company_id IS NULL ORDER BY seq DESC LIMIT 1;
    ELSE
        SELECT seq, hash INTO last_seq, last_hash FROM audit_entries
        WHERE company_id = NEW.company_id ORDER BY seq DESC LIMIT 1;
    END IF;
    NEW.seq := coalesce(last_seq, 0) + 1;
    NEW.prev_hash := last_hash;
    NEW.hash := audit_entry_hash(NEW);
    RETURN NEW;
END $$;
"""

BACKFILL = """
DO $$
DECLARE
    r audit_entries;
    previous bytea;
    chain text;
    first boolean := true;
BEGIN
    UPDATE audit_entries a SET seq = numbered.n
    FROM (
        SELECT id, row_number() OVER (PARTITION BY company_id ORDER BY occurred_at, id) AS n
        FROM audit_entries
    ) AS numbered
    WHERE a.id = numbered.id;
    FOR r IN SELECT * FROM audit_entries ORDER BY company_id NULLS FIRST, seq LOOP
        IF first OR r.company_id IS DISTINCT FROM chain THEN
            previous := NULL;
        END IF;
        r.prev_hash := previous;
        r.hash := audit_entry_hash(r);
        UPDATE audit_entries SET prev_hash = r.prev_hash, hash = r.hash WHERE id = r.id;
        previous := r.hash;
        chain := r.company_id;
        first := false;
    END LOOP;
END $$;
"""


def upgrade() -> None:
    op.add_column("audit_entries", sa.Column("seq", sa.BigInteger(), nullable=True))
    op.add_column("audit_entries", sa.Column("prev_hash", sa.LargeBinary(), nullable=True))
    op.add_column("audit_entries", sa.Column("hash", sa.LargeBinary(), nullable=True))
    op.execute(AUDIT_ENTRY_HASH)
    # Chain the entries written so far, in the order they were written.
    op.execute("ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_append_only")
    op.execute(BACKFILL)
    op.execute("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_append_only")
    op.alter_column("audit_entries", "seq", nullable=False)
    op.alter_column("audit_entries", "hash", nullable=False)
    # Finds a chain's last entry; unique, so a fork is an error rather than a silent branch.
    op.create_index(
        "ix_audit_entries_chain",
        "audit_entries",
        ["company_id", "seq"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(AUDIT_ENTRIES_CHAIN)
    op.execute(
        """
        CREATE TRIGGER audit_entries_chain BEFORE INSERT ON audit_entries
            FOR EACH ROW EXECUTE FUNCTION audit_entries_chain()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_entries_chain ON audit_entries")
    op.execute("DROP FUNCTION IF EXISTS audit_entries_chain()")
    op.drop_index("ix_audit_entries_chain", table_name="audit_entries")
    op.execute("DROP FUNCTION IF EXISTS audit_entry_hash(audit_entries)")
    op.drop_column("audit_entries", "hash")
    op.drop_column("audit_entries", "prev_hash")
    op.drop_column("audit_entries", "seq")
