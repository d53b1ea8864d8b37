"""The tenants list: who uses Nextra, their name and tier."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from nextra.events.envelope import RecordedEvent
from nextra.events.tenants import TenantCreated, TenantRenamed, TenantTierChanged
from nextra.readmodels.projection import Projection
from nextra.readmodels.tables import tenants

__all__ = ("TenantSummary", "TenantsProjection", "read_tenant", "read_tenants")


class TenantSummary(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    name: str
    tier: str
    created_at: datetime
    updated_at: datetime
    version: int


class TenantsProjection(Projection):
    tables = (tenants,)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        # Fold the batch per tenant first: one statement per tenant, not per event.
        created: dict[str, dict[str, Any]] = {}
        changed: dict[str, dict[str, Any]] = {}
        for recorded in events:
            tenant_id = recorded.aggregate.aggregate_id
            event = recorded.event
            stamp = {"updated_at": recorded.recorded_at, "version": recorded.sequence}
            if isinstance(event, TenantCreated):
                created[tenant_id] = {
                    "tenant_id": tenant_id,
                    "name": event.name,
                    "tier": event.tier,
                    "created_at": recorded.recorded_at,
                    **stamp,
                }
                continue
            fields: dict[str, Any] = {}
            if isinstance(event, TenantRenamed):
                fields["name"] = event.name
            elif isinstance(event, TenantTierChanged):
                fields["tier"] = event.tier
            target = created.get(tenant_id)
            if target is not None:
                target.update(fields, **stamp)
            else:
                changes = changed.setdefault(
                    tenant_id, {"key": tenant_id, "name": None, "tier": None}
                )
                changes.update(fields, **stamp)

        if created:
            inserts = insert(tenants).on_conflict_do_nothing(
                index_elements=["tenant_id"]
            )
            await connection.execute(inserts, list(created.values()))
        if changed:
            updates = (
                update(tenants)
                .where(tenants.c.tenant_id == bindparam("key"))
                .values(
                    name=func.coalesce(bindparam("name"), tenants.c.name),
                    tier=func.coalesce(bindparam("tier"), tenants.c.tier),
                    updated_at=bindparam("updated_at"),
                    version=bindparam("version"),
                )
            )
            await connection.execute(updates, list(changed.values()))


async def read_tenants(
    connection: AsyncConnection, *, limit: int = 100, after: str | None = None
) -> list[TenantSummary]:
    """Tenants ordered by id, ``limit`` at a time after the id ``after``."""
    query = select(tenants).order_by(tenants.c.tenant_id).limit(limit)
    if after is not None:
        query = query.where(tenants.c.tenant_id > after)
    rows = await connection.execute(query)
    return [TenantSummary(**row._mapping) for row in rows]


async def read_tenant(
    connection: AsyncConnection, tenant_id: str
) -> TenantSummary | None:
    row = (
        await connection.execute(
            select(tenants).where(tenants.c.tenant_id == tenant_id)
        )
    ).first()
    return TenantSummary(**row._mapping) if row else None
