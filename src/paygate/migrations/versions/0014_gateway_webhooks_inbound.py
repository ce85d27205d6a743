"""gateway webhooks received: events, their processing history, bulk replays; disputes

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-06 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("provider", sa.String(length=20), nullable=False),
        sa.Column("provider_event_id", sa.String(length=255), nullable=True),
        sa.Column("event_type", sa.String(length=100), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("body", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("verified", sa.Boolean(), nullable=False),
        sa.Column("verification", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("outcome", sa.Text(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("refund_id", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_webhook_events_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_webhook_events_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
    )
    op.create_index(op.f("ix_webhook_events_company_id"), "webhook_events", ["company_id"])
    op.create_index(op.f("ix_webhook_events_payment_id"), "webhook_events", ["payment_id"])
    op.create_index(
        "ix_webhook_events_company_received", "webhook_events", ["company_id", "received_at"]
    )
    op.create_index(
        "ix_webhook_events_company_gateway", "webhook_events", ["company_id", "gateway_id"]
    )
    # A provider's event is stored (and so processed) once per gateway; rejected requests
    # do not take the id.
    op.create_index(
        "uq_webhook_events_gateway_provider_event",
        "webhook_events",
        ["gateway_id", "provider_event_id"],
        unique=True,
        postgresql_where=sa.text("verified"),
    )
    op.create_index(
        "ix_webhook_events_due",
        "webhook_events",
        ["next_attempt_at"],
        postgresql_where=sa.text("next_attempt_at IS NOT NULL"),
    )

    op.create_table(
        "webhook_event_attempts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("event_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("actor", sa.String(length=200), nullable=True),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("result", sa.String(length=20), nullable=False),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"],
            ["companies.id"],
            name=op.f("fk_webhook_event_attempts_company_id_companies"),
        ),
        sa.ForeignKeyConstraint(
            ["event_id"],
            ["webhook_events.id"],
            name=op.f("fk_webhook_event_attempts_event_id_webhook_events"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_event_attempts")),
    )
    op.create_index(
        op.f("ix_webhook_event_attempts_company_id"), "webhook_event_attempts", ["company_id"]
    )
    op.create_index(
        op.f("ix_webhook_event_attempts_event_id"), "webhook_event_attempts", ["event_id"]
    )

    op.create_table(
        "webhook_replays",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=40), nullable=True),
        sa.Column("received_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("started_by_type", sa.String(length=20), nullable=False),
        sa.Column("started_by_id", sa.String(length=40), nullable=True),
        sa.Column("started_by", sa.String(length=320), nullable=True),
        sa.Column(
            "started_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.Column("progressed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.Column("cursor", sa.String(length=40), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_webhook_replays_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_replays")),
    )
    op.create_index(op.f("ix_webhook_replays_company_id"), "webhook_replays", ["company_id"])
    op.create_index(
        "uq_webhook_replays_running",
        "webhook_replays",
        ["company_id"],
        unique=True,
        postgresql_where=sa.text("status = 'running'"),
    )

    # The disputed mark on a payment (payments/gateway_reports.py keeps it).
    op.add_column("payments", sa.Column("disputed_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("payments", sa.Column("dispute_status", sa.String(length=20), nullable=True))
    op.add_column("payments", sa.Column("dispute_reference", sa.String(length=200), nullable=True))
    op.add_column("payments", sa.Column("dispute_reason", sa.String(length=100), nullable=True))
    op.add_column(
        "payments", sa.Column("dispute_updated_at", sa.DateTime(timezone=True), nullable=True)
    )


def downgrade() -> None:
    for column in (
        "dispute_updated_at",
        "dispute_reason",
        "dispute_reference",
        "dispute_status",
        "disputed_at",
    ):
        op.drop_column("payments", column)
    op.drop_table("webhook_replays")
    op.drop_table("webhook_event_attempts")
    op.drop_table("webhook_events")
