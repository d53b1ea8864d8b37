"""Rebuild a projection side by side from the first event, then swap it in.

The new tables are built in a shadow schema while the live projection keeps
serving and updating. The swap holds the live checkpoint row, so the live
projector pauses; the shadow catches up to the live position inside that same
transaction, replaces the live tables, and takes over the checkpoint.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec
from sqlalchemy import text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nextra.events.envelope import RecordedEvent
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.readmodels.checkpoints import ensure_checkpoint, lock_checkpoint
from nextra.readmodels.projection import Projection, ProjectionSpec
from nextra.readmodels.tables import metadata, projection_checkpoints

__all__ = ("RebuildReport", "rebuild_projection")


class RebuildReport(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    version: int
    events: int
    last_sequence: int
    seconds: float


async def rebuild_projection(
    spec: ProjectionSpec,
    projection: Projection,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    *,
    batch_size: int = 2000,
) -> RebuildReport:
    """Build ``projection`` anew from the stream and make it the live one."""
    started = time.perf_counter()
    shadow = f"nx_rebuild_{spec.name}"

    async with engine.begin() as connection:
        await connection.execute(text(f'DROP SCHEMA IF EXISTS "{shadow}" CASCADE'))
        await connection.execute(text(f'CREATE SCHEMA "{shadow}"'))
        mapped = await connection.execution_options(schema_translate_map={None: shadow})
        await mapped.run_sync(metadata.create_all, tables=list(projection.tables))

    position, count = 0, 0
    batch: list[RecordedEvent] = []
    async for recorded in store.read(after=0, subject=spec.subject):
        batch.append(recorded)
        if len(batch) >= batch_size:
            position, count = await _apply_shadow(
                engine, projection, shadow, batch, count
            )
            batch = []
    if batch:
        position, count = await _apply_shadow(engine, projection, shadow, batch, count)

    async with engine.begin() as connection:
        await ensure_checkpoint(connection, spec.name, spec.version)
        live = await lock_checkpoint(connection, spec.name)
        if live.last_sequence > position:
            # The live projector moved on while we built; catch up under the lock.
            tail = [
                recorded
                async for recorded in store.read(after=position, subject=spec.subject)
                if recorded.sequence <= live.last_sequence
            ]
            if tail:
                await _apply(connection, projection, shadow, tail)
                count += len(tail)
            position = live.last_sequence
        for table in projection.tables:
            await connection.execute(
                text(f'DROP TABLE IF EXISTS public."{table.name}"')
            )
            await connection.execute(
                text(f'ALTER TABLE "{shadow}"."{table.name}" SET SCHEMA public')
            )
        await connection.execute(text(f'DROP SCHEMA "{shadow}" CASCADE'))
        await connection.execute(
            update(projection_checkpoints)
            .where(projection_checkpoints.c.projection == spec.name)
            .values(
                version=spec.version,
                last_sequence=position,
                updated_at=datetime.now(UTC),
            )
        )

    return RebuildReport(
        projection=spec.name,
        version=spec.version,
        events=count,
        last_sequence=position,
        seconds=round(time.perf_counter() - started, 3),
    )


async def _apply_shadow(
    engine: AsyncEngine,
    projection: Projection,
    shadow: str,
    batch: Sequence[RecordedEvent],
    count: int,
) -> tuple[int, int]:
    async with engine.begin() as connection:
        await _apply(connection, projection, shadow, batch)
    return batch[-1].sequence, count + len(batch)


async def _apply(
    connection: AsyncConnection,
    projection: Projection,
    shadow: str,
    batch: Sequence[RecordedEvent],
) -> None:
    # execution_options changes the connection itself: undo it, or statements
    # that follow in the same transaction would land in the shadow schema too.
    await connection.execution_options(schema_translate_map={None: shadow})
    try:
        await projection.apply(connection, batch)
    finally:
        await connection.execution_options(schema_translate_map=None)
