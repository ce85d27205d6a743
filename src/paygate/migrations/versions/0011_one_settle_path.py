"""one settle path: the invoice's reserved amount, attempt and refund failure details

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-06 08:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # What open payments (and payments in review) hold of the invoice's amount due, kept by
    # reserve and settle under the invoice's row lock: a payment reserves in one statement.
    op.add_column(
        "invoices",
        sa.Column("amount_reserved", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(
        """
        UPDATE invoices i SET amount_reserved = r.total
        FROM (SELECT invoice_id, sum(amount) AS total FROM payments
              WHERE status IN ('processing', 'requires_action', 'requires_review')
              GROUP BY invoice_id) r
        WHERE r.invoice_id = i.id
        """
    )
    op.create_check_constraint(
        op.f("ck_invoices_amount_reserved_not_negative"), "invoices", "amount_reserved >= 0"
    )
    for table in ("payment_attempts", "refunds"):
        op.add_column(table, sa.Column("gateway_code", sa.String(length=100), nullable=True))
        op.add_column(table, sa.Column("failure_kind", sa.String(length=20), nullable=True))
    op.add_column("payment_attempts", sa.Column("latency_ms", sa.Float(), nullable=True))
    op.add_column("refunds", sa.Column("failure_code", sa.String(length=40), nullable=True))


def downgrade() -> None:
    op.drop_column("refunds", "failure_code")
    op.drop_column("payment_attempts", "latency_ms")
    for table in ("payment_attempts", "refunds"):
        op.drop_column(table, "failure_kind")
        op.drop_column(table, "gateway_code")
    op.drop_constraint(op.f("ck_invoices_amount_reserved_not_negative"), "invoices", type_="check")
    op.drop_column("invoices", "amount_reserved")
