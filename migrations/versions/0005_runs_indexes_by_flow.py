"""A flow's runs are indexed by flow first, so a run's key is its only index.

Revision ID: 0005
Revises: 0004
Created: 2026-12-04

Both listing indexes began with tenant_id, as the primary key does. An update of
one run by (tenant_id, run_id) could then be planned on a listing index, found by
tenant alone and filtered by run: whenever the planner's statistics did not yet
know the tenant (a new tenant, a table not analysed since it grew), the costs
tied, and each update read every run of the tenant. The runs projection's
updates did this during a 10,000-run flood. Listing queries name both tenant and
flow, so they use the indexes as well in this order.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.drop_index("ix_runs_tenant_flow_status", table_name="runs")
    op.drop_index("ix_runs_tenant_flow_triggered", table_name="runs")
    op.create_index(
        "ix_runs_flow_triggered",
        "runs",
        ["flow_id", "tenant_id", "triggered_at", "run_id"],
    )
    op.create_index(
        "ix_runs_flow_status",
        "runs",
        ["flow_id", "tenant_id", "status", "triggered_at"],
    )


def downgrade() -> None:
    op.drop_index("ix_runs_flow_status", table_name="runs")
    op.drop_index("ix_runs_flow_triggered", table_name="runs")
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
