"""The projection runner against real JetStream and Postgres."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from nats.aio.client import Client as NatsClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.app.tenants import TenantCommands
from nextra.events.envelope import CommandContext
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.errors import ProjectionError
from nextra.kernel.ids import new_id
from nextra.readmodels.checkpoints import read_checkpoints, wait_projected
from nextra.readmodels.projection import ProjectionSpec, load_catalogue
from nextra.readmodels.runner import ProjectionRunner
from nextra.readmodels.tables import metadata, projection_checkpoints
from nextra.readmodels.tenants import read_tenant, read_tenants


@pytest.fixture
def spec(root: Path) -> ProjectionSpec:
    return next(s for s in load_catalogue(root / "projections") if s.name == "tenants")


@contextlib.asynccontextmanager
async def running(runner: ProjectionRunner) -> AsyncIterator[asyncio.Task[None]]:
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    try:
        yield task
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


def runner_for(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> ProjectionRunner:
    return ProjectionRunner(spec, spec.create(), engine, store, nc, batch_size=50)


async def test_tenants_projection_follows_creates_renames_and_tiers(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    commands = TenantCommands(store)
    acme, globex = new_id(), new_id()

    async with running(runner_for(spec, engine, store, nc)):
        await commands.create(acme, "Acme", context=CommandContext())
        await commands.create(globex, "Globex", tier="pro", context=CommandContext())
        await commands.rename(acme, "Acme Inc", context=CommandContext())
        last = await commands.change_tier(acme, "enterprise", context=CommandContext())
        assert last is not None
        await wait_projected(engine, "tenants", last.last_sequence, timeout=10)

    async with engine.connect() as connection:
        rows = {row.tenant_id: row for row in await read_tenants(connection)}
    assert (rows[acme].name, rows[acme].tier, rows[acme].version) == (
        "Acme Inc",
        "enterprise",
        last.last_sequence,
    )
    assert (rows[globex].name, rows[globex].tier) == ("Globex", "pro")


async def test_events_appended_while_stopped_are_projected_on_restart(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    commands = TenantCommands(store)
    first = await commands.create(new_id(), "Before", context=CommandContext())
    assert first is not None
    async with running(runner_for(spec, engine, store, nc)):
        await wait_projected(engine, "tenants", first.last_sequence, timeout=10)

    later = [new_id() for _ in range(120)]
    for tenant_id in later:
        result = await commands.create(
            tenant_id, "While stopped", context=CommandContext()
        )
    assert result is not None
    async with running(runner_for(spec, engine, store, nc)):
        await wait_projected(engine, "tenants", result.last_sequence, timeout=10)

    async with engine.connect() as connection:
        assert len(await read_tenants(connection, limit=500)) == 121
        checkpoints = await read_checkpoints(connection)
    assert checkpoints["tenants"].last_sequence == result.last_sequence


async def test_only_one_runner_per_projection_is_active(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    commands = TenantCommands(store)
    leader = runner_for(spec, engine, store, nc)
    standby = runner_for(spec, engine, store, nc)

    async with running(leader):
        await asyncio.sleep(0.3)  # let the leader take the lock first
        async with running(standby):
            for _ in range(20):
                result = await commands.create(new_id(), "T", context=CommandContext())
            assert result is not None
            await wait_projected(engine, "tenants", result.last_sequence, timeout=10)
            assert (leader.applied, standby.applied) == (20, 0)


async def test_standby_takes_over_when_the_leader_stops(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    commands = TenantCommands(store)
    leader = runner_for(spec, engine, store, nc)
    standby = runner_for(spec, engine, store, nc)
    stop_leader, stop_standby = asyncio.Event(), asyncio.Event()

    leader_task = asyncio.create_task(leader.run(stop_leader))
    await asyncio.sleep(0.3)
    standby_task = asyncio.create_task(standby.run(stop_standby))
    try:
        stop_leader.set()
        await asyncio.wait_for(leader_task, 10)
        result = await commands.create(new_id(), "T", context=CommandContext())
        assert result is not None
        await wait_projected(engine, "tenants", result.last_sequence, timeout=10)
    finally:
        stop_standby.set()
        await asyncio.wait_for(standby_task, 10)

    assert standby.applied == 1


async def test_wait_projected_times_out_with_a_clear_error(engine: AsyncEngine) -> None:
    with pytest.raises(ProjectionError, match="did not reach 99"):
        await wait_projected(engine, "tenants", 99, timeout=0.2)


async def test_runner_refuses_a_projection_whose_version_changed(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    async with running(runner_for(spec, engine, store, nc)):
        await asyncio.sleep(0.2)
    async with engine.begin() as connection:
        await connection.execute(
            update(projection_checkpoints)
            .where(projection_checkpoints.c.projection == "tenants")
            .values(version=spec.version + 1)
        )

    with pytest.raises(ProjectionError, match="nextra projections rebuild tenants"):
        await runner_for(spec, engine, store, nc).run(asyncio.Event())


async def test_read_tenant_returns_none_for_unknown(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await read_tenant(connection, "nobody") is None


async def test_migrations_create_exactly_the_declared_tables(
    engine: AsyncEngine,
) -> None:
    """Rebuilds create tables from the metadata; they must equal the migrated ones."""
    async with engine.connect() as connection:
        differences = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), metadata)
        )

    assert differences == []
