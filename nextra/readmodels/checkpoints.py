"""Where each projection got to, and waiting for it to get somewhere."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import msgspec
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nextra.kernel.errors import ProjectionError
from nextra.readmodels.tables import projection_checkpoints

__all__ = (
    "Checkpoint",
    "ensure_checkpoint",
    "lock_checkpoint",
    "read_checkpoints",
    "wait_projected",
)


class Checkpoint(msgspec.Struct, frozen=True, kw_only=True):
    projection: str
    version: int
    last_sequence: int
    updated_at: datetime


async def ensure_checkpoint(
    connection: AsyncConnection, name: str, version: int
) -> None:
    statement = insert(projection_checkpoints).values(
        projection=name, version=version, last_sequence=0, updated_at=datetime.now(UTC)
    )
    await connection.execute(statement.on_conflict_do_nothing())


async def lock_checkpoint(connection: AsyncConnection, name: str) -> Checkpoint:
    """Read a checkpoint and hold its row until the transaction ends.

    Whoever holds the row is the only writer of the projection's tables: the
    live projector takes it for every batch, a rebuild takes it to swap.
    """
    row = (
        await connection.execute(
            select(projection_checkpoints)
            .where(projection_checkpoints.c.projection == name)
            .with_for_update()
        )
    ).one()
    return Checkpoint(**row._mapping)


async def read_checkpoints(connection: AsyncConnection) -> dict[str, Checkpoint]:
    rows = await connection.execute(select(projection_checkpoints))
    return {row.projection: Checkpoint(**row._mapping) for row in rows}


async def wait_projected(
    engine: AsyncEngine, name: str, sequence: int, *, timeout: float
) -> None:
    """Return once projection ``name`` has applied stream sequence ``sequence``.

    This is how a caller reads its own write: an append returns the sequence it
    landed at, and the query waits for the projection to pass it.

    Raises:
        ProjectionError: The projection did not get there within ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    delay = 0.005
    query = select(projection_checkpoints.c.last_sequence).where(
        projection_checkpoints.c.projection == name
    )
    while True:
        async with engine.connect() as connection:
            reached = (await connection.execute(query)).scalar() or 0
        if reached >= sequence:
            return
        if loop.time() + delay > deadline:
            message = (
                f"projection {name} is at sequence {reached} and did not reach "
                f"{sequence} within {timeout}s; is the projector running?"
            )
            raise ProjectionError(message, expected=sequence, got=reached, where=name)
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
