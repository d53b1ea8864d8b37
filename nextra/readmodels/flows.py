"""Flows as people list them, and every revision each one had."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import msgspec
from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nextra.events.envelope import RecordedEvent
from nextra.events.flows import (
    FlowCreated,
    FlowDeleted,
    FlowRevised,
    FlowStarted,
    FlowStopped,
)
from nextra.readmodels.projection import Projection
from nextra.readmodels.tables import flow_revisions, flows

__all__ = (
    "FlowRevision",
    "FlowSummary",
    "FlowsProjection",
    "deleted_flows",
    "read_flow",
    "read_flow_revision",
    "read_flow_revisions",
    "read_flows",
)

# Pairs asked about in one statement, well under Postgres' parameter limit.
_PAIRS_PER_QUERY = 1000


class FlowSummary(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    flow_id: str
    name: str
    description: str
    status: str
    revision: int
    organism_yaml: str
    canvas: dict[str, Any]
    deleted: bool
    created_at: datetime
    updated_at: datetime
    version: int


class FlowRevision(msgspec.Struct, frozen=True, kw_only=True):
    tenant_id: str
    flow_id: str
    revision: int
    name: str
    description: str
    organism_yaml: str
    canvas: dict[str, Any]
    changes: list[str]
    actor: str
    recorded_at: datetime
    sequence: int


class FlowsProjection(Projection):
    tables = (flows, flow_revisions)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        # Events of one flow are few and arrive in order; apply them one by one.
        for recorded in events:
            event = recorded.event
            key = {
                "tenant_id": recorded.aggregate.tenant_id,
                "flow_id": recorded.aggregate.aggregate_id,
            }
            stamp = {"updated_at": recorded.recorded_at, "version": recorded.sequence}
            if isinstance(event, FlowCreated | FlowRevised):
                revision = event.revision if isinstance(event, FlowRevised) else 1
                content = {
                    "name": event.name,
                    "description": event.description,
                    "organism_yaml": event.organism_yaml,
                    "canvas": event.canvas,
                }
                changes = event.changes if isinstance(event, FlowRevised) else []
                await connection.execute(
                    insert(flow_revisions)
                    .values(
                        **key,
                        **content,
                        revision=revision,
                        changes=changes,
                        actor=recorded.actor,
                        recorded_at=recorded.recorded_at,
                        sequence=recorded.sequence,
                    )
                    .on_conflict_do_nothing()
                )
                if isinstance(event, FlowCreated):
                    await connection.execute(
                        insert(flows)
                        .values(
                            **key,
                            **content,
                            **stamp,
                            status="stopped",
                            revision=1,
                            deleted=False,
                            created_at=recorded.recorded_at,
                        )
                        .on_conflict_do_nothing()
                    )
                    continue
                changed: dict[str, Any] = {**content, "revision": revision}
            elif isinstance(event, FlowStarted):
                changed = {"status": "running"}
            elif isinstance(event, FlowStopped):
                changed = {"status": "stopped"}
            elif isinstance(event, FlowDeleted):
                changed = {"deleted": True, "status": "stopped"}
            else:
                continue
            await connection.execute(
                update(flows)
                .where(
                    flows.c.tenant_id == key["tenant_id"],
                    flows.c.flow_id == key["flow_id"],
                )
                .values(**changed, **stamp)
            )


async def read_flow(
    connection: AsyncConnection, tenant_id: str, flow_id: str
) -> FlowSummary | None:
    """One flow of one tenant; ``None`` when it does not exist or was deleted."""
    row = (
        await connection.execute(
            select(flows).where(
                flows.c.tenant_id == tenant_id,
                flows.c.flow_id == flow_id,
                flows.c.deleted.is_(False),
            )
        )
    ).first()
    return FlowSummary(**row._mapping) if row else None


async def deleted_flows(
    engine: AsyncEngine, candidates: Sequence[tuple[str, str]], before: datetime
) -> list[tuple[str, str]]:
    """Which of the ``(tenant, flow)`` pairs are flows deleted before ``before``.

    Asked by workers about the flows whose work consumers sit idle, for all
    tenants at once.
    """
    found: list[tuple[str, str]] = []
    for start in range(0, len(candidates), _PAIRS_PER_QUERY):
        pairs = candidates[start : start + _PAIRS_PER_QUERY]
        query = select(flows.c.tenant_id, flows.c.flow_id).where(
            tuple_(flows.c.tenant_id, flows.c.flow_id).in_(pairs),
            flows.c.deleted.is_(True),
            flows.c.updated_at < before,
        )
        async with engine.connect() as connection:
            rows = await connection.execute(query)
            found.extend((row.tenant_id, row.flow_id) for row in rows)
    return found


async def read_flow_revisions(
    connection: AsyncConnection, tenant_id: str, flow_id: str
) -> list[FlowRevision]:
    rows = await connection.execute(
        select(flow_revisions)
        .where(
            flow_revisions.c.tenant_id == tenant_id,
            flow_revisions.c.flow_id == flow_id,
        )
        .order_by(flow_revisions.c.revision)
    )
    return [FlowRevision(**row._mapping) for row in rows]


async def read_flow_revision(
    connection: AsyncConnection, tenant_id: str, flow_id: str, revision: int
) -> FlowRevision | None:
    row = (
        await connection.execute(
            select(flow_revisions).where(
                flow_revisions.c.tenant_id == tenant_id,
                flow_revisions.c.flow_id == flow_id,
                flow_revisions.c.revision == revision,
            )
        )
    ).first()
    return FlowRevision(**row._mapping) if row else None


async def read_flows(
    connection: AsyncConnection,
    tenant_id: str,
    *,
    status: str | None = None,
    name: str | None = None,
    before: str | None = None,
    limit: int = 50,
) -> list[FlowSummary]:
    """A tenant's live flows, newest first (flow ids sort by creation time).

    Args:
        name: Keep flows whose name contains this, ignoring case.
        before: A cursor: only flows older than this flow id.
    """
    query = (
        select(flows)
        .where(flows.c.tenant_id == tenant_id, flows.c.deleted.is_(False))
        .order_by(flows.c.flow_id.desc())
        .limit(limit)
    )
    if status is not None:
        query = query.where(flows.c.status == status)
    if name:
        escaped = name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(flows.c.name.ilike(f"%{escaped}%", escape="\\"))
    if before is not None:
        query = query.where(flows.c.flow_id < before)
    rows = await connection.execute(query)
    return [FlowSummary(**row._mapping) for row in rows]
