"""routing rules and their versions, retry policy, circuit breakers, queued payment retries

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-06 18:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _created() -> sa.Column[datetime]:
    return sa.Column(
        "created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def _updated() -> sa.Column[datetime]:
    return sa.Column(
        "updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
    )


def upgrade() -> None:
    # Configuration history, shared by every configuration that keeps versions.
    op.create_table(
        "config_versions",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("object_type", sa.String(length=40), nullable=False),
        sa.Column("object_id", sa.String(length=40), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("snapshot", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("restored_from", sa.Integer(), nullable=True),
        sa.Column("actor_type", sa.String(length=20), nullable=False),
        sa.Column("actor_id", sa.String(length=40), nullable=True),
        sa.Column("actor_label", sa.String(length=320), nullable=True),
        _created(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_config_versions_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_config_versions")),
    )
    op.create_index(
        op.f("ix_config_versions_company_id"), "config_versions", ["company_id"], unique=False
    )
    op.create_index(
        "ix_config_versions_object_version",
        "config_versions",
        ["company_id", "object_type", "object_id", "version"],
        unique=True,
    )

    op.create_table(
        "routing_configs",
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("default_gateway_ids", sa.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _updated(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_routing_configs_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_routing_configs")),
    )

    op.create_table(
        "routing_rules",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("conditions", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("action", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        _created(),
        _updated(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_routing_rules_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_routing_rules")),
    )
    op.create_index(
        op.f("ix_routing_rules_company_id"), "routing_rules", ["company_id"], unique=False
    )
    op.create_index(
        "ix_routing_rules_company_position",
        "routing_rules",
        ["company_id", "position"],
        unique=False,
    )

    op.create_table(
        "retry_policies",
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("max_attempts", sa.Integer(), nullable=False),
        sa.Column("retry_decline_codes", sa.ARRAY(sa.String(length=40)), nullable=False),
        sa.Column("failover_customer_present", sa.Boolean(), nullable=False),
        sa.Column("failover_api", sa.Boolean(), nullable=False),
        sa.Column("breaker_failures", sa.Integer(), nullable=False),
        sa.Column("breaker_cooldown_seconds", sa.Integer(), nullable=False),
        _updated(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_retry_policies_company_id_companies")
        ),
        sa.PrimaryKeyConstraint("company_id", name=op.f("pk_retry_policies")),
    )

    op.create_table(
        "gateway_breakers",
        sa.Column("gateway_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=10), nullable=False),
        sa.Column("consecutive_failures", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("probe_started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_failure", sa.Text(), nullable=True),
        _updated(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_gateway_breakers_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["gateway_id"],
            ["gateways.id"],
            name=op.f("fk_gateway_breakers_gateway_id_gateways"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_gateway_breakers")),
    )
    op.create_index(
        op.f("ix_gateway_breakers_company_id"), "gateway_breakers", ["company_id"], unique=False
    )

    op.create_table(
        "payment_retries",
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("company_id", sa.String(length=40), nullable=False),
        sa.Column("retries_done", sa.Integer(), nullable=False),
        sa.Column("pinned_gateway_id", sa.String(length=40), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _created(),
        _updated(),
        sa.ForeignKeyConstraint(
            ["company_id"], ["companies.id"], name=op.f("fk_payment_retries_company_id_companies")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"],
            ["payments.id"],
            name=op.f("fk_payment_retries_payment_id_payments"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("payment_id", name=op.f("pk_payment_retries")),
    )
    op.create_index(
        op.f("ix_payment_retries_company_id"), "payment_retries", ["company_id"], unique=False
    )
    op.create_index(
        op.f("ix_payment_retries_next_attempt_at"),
        "payment_retries",
        ["next_attempt_at"],
        unique=False,
    )

    # Success-rate routing reads each gateway's newest finished attempts.
    op.create_index(
        "ix_payment_attempts_gateway_created",
        "payment_attempts",
        ["gateway_id", "created_at"],
        unique=False,
    )

    # Routing conditions: the customer's country and the invoice's own key/value metadata.
    op.add_column(
        "invoices",
        sa.Column(
            "metadata",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
    )
    op.add_column("invoices", sa.Column("customer_country", sa.String(length=2), nullable=True))


def downgrade() -> None:
    op.drop_column("invoices", "customer_country")
    op.drop_column("invoices", "metadata")
    op.drop_index("ix_payment_attempts_gateway_created", table_name="payment_attempts")
    op.drop_index(op.f("ix_payment_retries_next_attempt_at"), table_name="payment_retries")
    op.drop_index(op.f("ix_payment_retries_company_id"), table_name="payment_retries")
    op.drop_table("payment_retries")
    op.drop_index(op.f("ix_gateway_breakers_company_id"), table_name="gateway_breakers")
    op.drop_table("gateway_breakers")
    op.drop_table("retry_policies")
    op.drop_index("ix_routing_rules_company_position", table_name="routing_rules")
    op.drop_index(op.f("ix_routing_rules_company_id"), table_name="routing_rules")
    op.drop_table("routing_rules")
    op.drop_table("routing_configs")
    op.drop_index("ix_config_versions_object_version", table_name="config_versions")
    op.drop_index(op.f("ix_config_versions_company_id"), table_name="config_versions")
    op.drop_table("config_versions")
