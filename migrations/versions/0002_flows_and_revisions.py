"""Flows and their revisions.

Revision ID: 0002
Revises: 0001
Created: 2026-12-03

Read models are projections: a migration may drop and recreate a table as long as
the projection's version in projections/ is raised with it, so it is rebuilt.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "flows",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("organism_yaml", sa.Text(), nullable=False),
        sa.Column("canvas", postgresql.JSONB(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("tenant_id", "flow_id", name="pk_flows"),
    )
    op.create_index("ix_flows_tenant_name", "flows", ["tenant_id", "name"])
    op.create_table(
        "flow_revisions",
        sa.Column("tenant_id", sa.String(64), nullable=False),
        sa.Column("flow_id", sa.String(64), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("organism_yaml", sa.Text(), nullable=False),
        sa.Column("canvas", postgresql.JSONB(), nullable=False),
        sa.Column("changes", postgresql.JSONB(), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint(
            "tenant_id", "flow_id", "revision", name="pk_flow_revisions"
        ),
    )


def downgrade() -> None:
    op.drop_table("flow_revisions")
    op.drop_index("ix_flows_tenant_name", table_name="flows")
    op.drop_table("flows")
