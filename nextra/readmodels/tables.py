"""The read-model schema: every table a projection writes, on one MetaData.

Alembic migrations create these tables; a test checks that the migrations and
these definitions agree, so a side-by-side rebuild creates the very same shape.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = (
    "api_keys",
    "flow_revisions",
    "flows",
    "metadata",
    "projection_checkpoints",
    "run_messages",
    "run_steps",
    "runs",
    "tenant_members",
    "tenants",
)

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

projection_checkpoints = Table(
    "projection_checkpoints",
    metadata,
    Column("projection", String(100), primary_key=True),
    Column("version", Integer, nullable=False),
    # Stream sequence of the last event applied; applied in the same transaction
    # as the read-model rows, so an event at or below it is never applied again.
    Column("last_sequence", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("tier", String(20), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", BigInteger, nullable=False),
)

# Every row carries its tenant, and every query filters by it.
flows = Table(
    "flows",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("flow_id", String(64), primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(20), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("organism_yaml", Text, nullable=False),
    Column("canvas", JSONB, nullable=False),
    Column("deleted", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", BigInteger, nullable=False),
    Index("ix_flows_tenant_name", "tenant_id", "name"),
)

flow_revisions = Table(
    "flow_revisions",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("flow_id", String(64), primary_key=True),
    Column("revision", Integer, primary_key=True),
    Column("name", String(200), nullable=False),
    Column("description", Text, nullable=False),
    Column("organism_yaml", Text, nullable=False),
    Column("canvas", JSONB, nullable=False),
    Column("changes", JSONB, nullable=False),
    Column("actor", String(200), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("sequence", BigInteger, nullable=False),
)

tenant_members = Table(
    "tenant_members",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("user_id", String(200), primary_key=True),
    Column("role", String(20), nullable=False),
    Column("email", String(320), nullable=False),
    Column("added_at", DateTime(timezone=True), nullable=False),
)

# Only what lets a key be checked and listed: never the secret itself.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(64), primary_key=True),
    Column("tenant_id", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("key_hash", String(128), nullable=False),
    Column("role", String(20), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Index("ix_api_keys_tenant", "tenant_id"),
)

# One row per run: how it was triggered, where it stands, how it ended.
runs = Table(
    "runs",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("flow_id", String(64), nullable=False),
    Column("revision", Integer, nullable=False),
    Column("status", String(20), nullable=False),
    Column("trigger_kind", String(20), nullable=False),
    Column("trigger_source", Text, nullable=False),
    Column("triggered_at", DateTime(timezone=True), nullable=False),
    Column("deadline", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("duration_ms", BigInteger, nullable=True),
    Column("steps", Integer, nullable=False),
    Column("error_reason", String(40), nullable=True),
    Column("error_message", Text, nullable=True),
    Column("error_listener", Text, nullable=True),
    Column("output_type", Text, nullable=True),
    Column("output", JSONB(none_as_null=True), nullable=True),
    # Stream sequence of the last event applied to the row.
    Column("version", BigInteger, nullable=False),
    # A flow's runs, newest first, optionally within a time window. Flow first:
    # an index that began with tenant_id, as the key does, could be chosen for
    # an update of one run by its key and read all the tenant's runs
    # (migration 0005).
    Index(
        "ix_runs_flow_triggered",
        "flow_id",
        "tenant_id",
        "triggered_at",
        "run_id",
    ),
    Index(
        "ix_runs_flow_status",
        "flow_id",
        "tenant_id",
        "status",
        "triggered_at",
    ),
    # The watchdog's question: which running runs are past their deadline.
    Index(
        "ix_runs_running_deadline",
        "deadline",
        postgresql_where=text("status = 'running'"),
    ),
)

# Every message of a run: the trigger's and each one a step sent on. A step's
# incoming message is looked up here.
run_messages = Table(
    "run_messages",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("message_id", Text, primary_key=True),
    Column("kind", String(20), nullable=False),
    Column("sender", Text, nullable=False),
    Column("to", Text, nullable=False),
    Column("payload_type", Text, nullable=False),
    Column("payload", JSONB, nullable=False),
    Column("chain", JSONB, nullable=False),
    Column("thread_id", Text, nullable=False),
    Column("receivers", Integer, nullable=False),
    Column("sequence", BigInteger, nullable=False),
)

# One row per completed step, with its incoming message copied in from
# run_messages (NULL where that message is unknown).
run_steps = Table(
    "run_steps",
    metadata,
    Column("tenant_id", String(64), primary_key=True),
    Column("run_id", String(64), primary_key=True),
    Column("message_id", Text, primary_key=True),
    Column("entry", Integer, primary_key=True),
    Column("listener", Text, nullable=False),
    Column("sender", Text, nullable=True),
    Column("payload_type", Text, nullable=True),
    Column("payload", JSONB(none_as_null=True), nullable=True),
    Column("chain", JSONB(none_as_null=True), nullable=True),
    Column("thread_id", Text, nullable=True),
    Column("outcome", String(20), nullable=False),
    Column("error_code", Text, nullable=True),
    Column("error_message", Text, nullable=True),
    Column("limit_reason", String(40), nullable=True),
    Column("dropped", JSONB, nullable=False),
    Column("sent", JSONB, nullable=False),
    Column("sent_count", Integer, nullable=False),
    Column("started_at", DateTime(timezone=True), nullable=False),
    Column("duration_ms", Float, nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("logs", JSONB, nullable=False),
    Column("sequence", BigInteger, nullable=False),
)
