"""Runs, their messages and their steps.

Revision ID: 0004
Revises: 0003
Created: 2026-12-05

Read models are projections: a migration may drop and recreate a table as long as
the projection's version in projections/ is raised with it, so it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("trigger_kind", sa.String(20), nullable=False),
        sa.Column("trigger_source", sa.Text(), nullable=False),
        sa.Column("triggered_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("error_reason", sa.String(40), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("error_listener", sa.Text(), nullable=True),
        sa.Column("output_type", sa.Text(), nullable=True),
        sa.Column("output", postgresql.JSONB(), nullable=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "run_id", name="pk_runs"),
    )
    op.create_index(
        "ix_runs_tenant_flow_triggered",
        "runs",
        ["tenant_id", "flow_id", "triggered_at", "run_id"],
    )
    op.create_index(
        "ix_runs_tenant_flow_status",
        "runs",
        ["tenant_id", "flow_id", "status", "triggered_at"],
    )
    op.create_index(
        "ix_runs_running_deadline",
        "runs",
        ["deadline"],
        postgresql_where=sa.text("status = 'running'"),
    )
    op.create_table(
        "run_messages",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("sender", sa.Text(), nullable=False),
        sa.Column("to", sa.Text(), nullable=False),
        sa.Column("payload_type", sa.Text(), nullable=False),
        sa.Column("payload", postgresql.JSONB(), nullable=False),
        sa.Column("chain", postgresql.JSONB(), nullable=False),
        sa.Column("thread_id", sa.Text(), nullable=False),
        sa.Column("receivers", sa.Integer(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "run_id", "message_id", name="pk_run_messages"
        ),
    )
    op.create_table(
        "run_steps",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("message_id", sa.Text(), nullable=False),
        sa.Column("entry", sa.Integer(), nullable=False),
        sa.Column("listener", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text(), nullable=True),
        sa.Column("payload_type", sa.Text(), nullable=True),
        sa.Column("payload", postgresql.JSONB(), nullable=True),
        sa.Column("chain", postgresql.JSONB(), nullable=True),
        sa.Column("thread_id", sa.Text(), nullable=True),
        sa.Column("outcome", sa.String(20), nullable=False),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("limit_reason", sa.String(40), nullable=True),
        sa.Column("dropped", postgresql.JSONB(), nullable=False),
        sa.Column("sent", postgresql.JSONB(), nullable=False),
        sa.Column("sent_count", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Float(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("logs", postgresql.JSONB(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "run_id", "message_id", "entry", name="pk_run_steps"
        ),
    )


def downgrade() -> None:
    op.drop_table("run_steps")
    op.drop_table("run_messages")
    op.drop_index("ix_runs_running_deadline", table_name="runs")
    op.drop_index("ix_runs_tenant_flow_status", table_name="runs")
    op.drop_index("ix_runs_tenant_flow_triggered", table_name="runs")
    op.drop_table("runs")
