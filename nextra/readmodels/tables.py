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
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import JSONB

__all__ = (
    "api_keys",
    "flow_revisions",
    "flows",
    "metadata",
    "projection_checkpoints",
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
