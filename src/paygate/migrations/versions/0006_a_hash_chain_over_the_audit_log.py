"""a hash chain over the audit log

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28 15:10:00.000000

Every audit entry carries its position in its chain (`seq`), the hash of the entry before
it (`prev_hash`) and its own hash: sha256 over a canonical serialization of its fields and
`prev_hash`. There is one chain per company (and one for entries of no company), so tenants
never wait on one another. A deferred trigger seals each entry at its transaction's commit
(sets the three columns), so every writer is covered, the ORM and the raw SQL that reserves
a payment alike, and the chain's lock is held only while committing: taken earlier, at the
insert, it would be held across the transaction's later row locks and deadlock with a
transaction holding one of those rows and waiting to write its own entry. `paygate audit
verify` recomputes the chains with the same function, `audit_entry_hash`: the one
definition of the serialization.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
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
AUDIT_ENTRIES_SEAL = """
CREATE FUNCTION audit_entries_seal() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    entry audit_entries := NEW;
    last_seq bigint;
    last_hash bytea;
BEGIN
    -- Held only from here to the end of the commit: the next entry of this chain is sealed
    -- once this one is committed, so it links to the right hash. Taken at commit time, after
    -- every row lock the transaction takes, so it cannot close a cycle with them.
    PERFORM pg_advisory_xact_lock(1635083369, hashtext(coalesce(entry.company_id, '')));
    IF entry.company_id IS NULL THEN
        SELECT seq, hash INTO last_seq, last_hash FROM audit_entries
        WHERE company_id IS NULL AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    ELSE
        SELECT seq, hash INTO last_seq, last_hash FROM audit_entries
        WHERE company_id = entry.company_id AND seq IS NOT NULL ORDER BY seq DESC LIMIT 1;
    END IF;
    entry.seq := coalesce(last_seq, 0) + 1;
    entry.prev_hash := last_hash;
    entry.hash := audit_entry_hash(entry);
    UPDATE audit_entries SET seq = entry.seq, prev_hash = entry.prev_hash, hash = entry.hash
    WHERE id = entry.id;
    RETURN NULL;
END $$;
"""

# Append-only, with one exception: sealing, the first and only setting of the three chain
# columns of an entry not yet sealed, nothing else. Only the transaction that wrote an entry
# sees it unsealed: it is sealed at that transaction's commit.
AUDIT_ENTRIES_APPEND_ONLY = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.seq IS NULL AND OLD.hash IS NULL
       AND to_jsonb(OLD) - 'seq' - 'prev_hash' - 'hash'
           = to_jsonb(NEW) - 'seq' - 'prev_hash' - 'hash' THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit entries cannot be changed or deleted'
        USING ERRCODE = 'insufficient_privilege';
END $$;
"""

AUDIT_ENTRIES_APPEND_ONLY_0001 = """
CREATE OR REPLACE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit entries cannot be changed or deleted'
        USING ERRCODE = 'insufficient_privilege';
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
    # Finds a chain's last entry; unique, so a fork is an error rather than a silent branch
    # (entries of no company rely on the lock alone: NULLs are distinct in a unique index).
    op.create_index("ix_audit_entries_chain", "audit_entries", ["company_id", "seq"], unique=True)
    op.execute(AUDIT_ENTRIES_APPEND_ONLY)
    op.execute(AUDIT_ENTRIES_SEAL)
    op.execute(
        """
        CREATE CONSTRAINT TRIGGER audit_entries_seal AFTER INSERT ON audit_entries
            DEFERRABLE INITIALLY DEFERRED
            FOR EACH ROW EXECUTE FUNCTION audit_entries_seal()
        """
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS audit_entries_seal ON audit_entries")
    op.execute("DROP FUNCTION IF EXISTS audit_entries_seal()")
    op.execute(AUDIT_ENTRIES_APPEND_ONLY_0001)
    op.drop_index("ix_audit_entries_chain", table_name="audit_entries")
    op.execute("DROP FUNCTION IF EXISTS audit_entry_hash(audit_entries)")
    op.drop_column("audit_entries", "hash")
    op.drop_column("audit_entries", "prev_hash")
    op.drop_column("audit_entries", "seq")
