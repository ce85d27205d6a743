"""gateway health monitoring: monitors, check results and their hourly rollups, incidents,
the alert outbox and alert recipients; indexes for what monitoring reads from the payment path

Revision ID: 0013
Revises: 0011
Create Date: 2026-12-06 17:39:16.531624
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "alert_recipients",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("email", sa.String(length=254), nullable=False),
        sa.Column("kinds", postgresql.ARRAY(sa.String(length=20)), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_alert_recipients_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alert_recipients")),
        sa.UniqueConstraint("company_id", "email", name=op.f("uq_alert_recipients_company_id")),
    )
    op.create_index(
        op.f("ix_alert_recipients_company_id"), "alert_recipients", ["company_id"], unique=False
    )
    op.create_table(
        "gateway_monitors",
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("interval_minutes", sa.Integer(), nullable=False),
        sa.Column("failure_threshold", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=10), nullable=False),
        sa.Column("status_since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("check_state", sa.String(length=10), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("failing_since", sa.DateTime(timezone=True), nullable=True),
        sa.Column("passive_degraded", sa.Boolean(), nullable=False),
        sa.Column("passive_reason", sa.Text(), nullable=True),
        sa.Column("next_check_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("claimed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claim_token", sa.String(length=32), nullable=True),
        sa.Column("last_check_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_ok", sa.Boolean(), nullable=True),
        sa.Column("last_latency_ms", sa.Integer(), nullable=True),
        sa.Column("last_error_code", sa.String(length=40), nullable=True),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("tls_checked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tls_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("tls_error", sa.Text(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_gateway_monitors_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_monitors_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_gateway_monitors")),
    )
    op.create_index(
        op.f("ix_gateway_monitors_company_id"), "gateway_monitors", ["company_id"], unique=False
    )
    op.create_index(
        "ix_gateway_monitors_next_check_at", "gateway_monitors", ["next_check_at"], unique=False
    )
    op.create_table(
        "health_check_hours",
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("checks", sa.Integer(), nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("latency_p50", sa.Float(), nullable=True),
        sa.Column("latency_p95", sa.Float(), nullable=True),
        sa.Column("latency_max", sa.Integer(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_health_check_hours_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gateway_id", "hour", name=op.f("pk_health_check_hours")),
    )
    op.create_table(
        "health_checks",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=False), nullable=False),
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("checked_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ok", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_health_checks_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_health_checks")),
    )
    op.create_index("ix_health_checks_checked_at", "health_checks", ["checked_at"], unique=False)
    op.create_index(
        "ix_health_checks_gateway_checked",
        "health_checks",
        ["gateway_id", "checked_at"],
        unique=False,
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("last_message", sa.Text(), nullable=True),
        sa.Column("failed_checks", sa.Integer(), nullable=False),
        sa.Column("failed_calls", sa.Integer(), nullable=False),
        sa.Column("evidence", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("resolution", sa.String(length=20), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_incidents_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_incidents_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(op.f("ix_incidents_company_id"), "incidents", ["company_id"], unique=False)
    op.create_index(
        "uq_incidents_one_open",
        "incidents",
        ["gateway_id", "kind"],
        unique=True,
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.create_table(
        "alerts",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=40), nullable=True),
        sa.Column("incident_id", sa.String(length=40), nullable=True),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("dedup_key", sa.String(length=120), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("now()"),
            nullable=False,
        ),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("recipients", sa.Integer(), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_alerts_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_alerts_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["incident_id"],
            ["incidents.id"],
            name=op.f("fk_alerts_incident_id_incidents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_alerts")),
        sa.UniqueConstraint("dedup_key", name=op.f("uq_alerts_dedup_key")),
    )
    op.create_index(op.f("ix_alerts_company_id"), "alerts", ["company_id"], unique=False)
    op.create_index(
        "ix_alerts_unsent",
        "alerts",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("sent_at IS NULL"),
    )
    op.create_index("ix_gateway_calls_created_at", "gateway_calls", ["created_at"], unique=False)
    op.create_index(
        "ix_gateway_calls_gateway_created",
        "gateway_calls",
        ["gateway_id", "created_at"],
        unique=False,
    )
    op.create_index(
        "ix_payment_attempts_created_at", "payment_attempts", ["created_at"], unique=False
    )
    op.create_index(
        "ix_payment_attempts_failures",
        "payment_attempts",
        ["company_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("failure_kind IS NOT NULL"),
    )
    op.create_index(
        "ix_refunds_failures",
        "refunds",
        ["company_id", "created_at"],
        unique=False,
        postgresql_where=sa.text("failure_kind IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_refunds_failures",
        table_name="refunds",
        postgresql_where=sa.text("failure_kind IS NOT NULL"),
    )
    op.drop_index(
        "ix_payment_attempts_failures",
        table_name="payment_attempts",
        postgresql_where=sa.text("failure_kind IS NOT NULL"),
    )
    op.drop_index("ix_payment_attempts_created_at", table_name="payment_attempts")
    op.drop_index("ix_gateway_calls_gateway_created", table_name="gateway_calls")
    op.drop_index("ix_gateway_calls_created_at", table_name="gateway_calls")
    op.drop_index(
        "ix_alerts_unsent", table_name="alerts", postgresql_where=sa.text("sent_at IS NULL")
    )
    op.drop_index(op.f("ix_alerts_company_id"), table_name="alerts")
    op.drop_table("alerts")
    op.drop_index(
        "uq_incidents_one_open",
        table_name="incidents",
        postgresql_where=sa.text("ended_at IS NULL"),
    )
    op.drop_index(op.f("ix_incidents_company_id"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_index("ix_health_checks_gateway_checked", table_name="health_checks")
    op.drop_index("ix_health_checks_checked_at", table_name="health_checks")
    op.drop_table("health_checks")
    op.drop_table("health_check_hours")
    op.drop_index("ix_gateway_monitors_next_check_at", table_name="gateway_monitors")
    op.drop_index(op.f("ix_gateway_monitors_company_id"), table_name="gateway_monitors")
    op.drop_table("gateway_monitors")
    op.drop_index(op.f("ix_alert_recipients_company_id"), table_name="alert_recipients")
    op.drop_table("alert_recipients")
