"""A8/A9: projections survive crashes, rebuilds and redelivery: rows equal the fold."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from sqlalchemy import select, text, update
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.events.base import Event
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.tenants import (
    TenantCreated,
    TenantRenamed,
    TenantTierChanged,
    Tier,
)
from nextra.eventstore.base import AppendResult
from nextra.eventstore.consumers import Delivery, open_durable
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.ids import new_id
from nextra.kernel.settings import project_root
from nextra.readmodels.checkpoints import (
    ensure_checkpoint,
    lock_checkpoint,
    read_checkpoints,
    wait_projected,
)
from nextra.readmodels.projection import ProjectionSpec, load_catalogue
from nextra.readmodels.rebuild import rebuild_projection
from nextra.readmodels.runner import ProjectionRunner
from nextra.readmodels.tables import projection_checkpoints, tenants

TIERS: tuple[Tier, ...] = ("free", "paid", "pro", "enterprise")

Row = tuple[Any, ...]


def tenants_spec() -> ProjectionSpec:
    specs = load_catalogue(project_root() / "projections")
    return next(spec for spec in specs if spec.name == "tenants")


@dataclass
class Expected:
    """One tenant's row, folded from the commands the test appended."""

    name: str
    tier: Tier
    version: int
    created_sequence: int


class Workload:
    """Appends tenant commands and folds them itself, independent of projections.

    Each task owns its tenants, so it can pass the exact expected version; the
    fold takes names and tiers from the commands and versions from the acks.
    """

    def __init__(self, store: JetStreamEventStore, seed: int) -> None:
        self.store = store
        self.random = random.Random(seed)
        self.expected: dict[str, Expected] = {}
        self.events = 0

    async def run(self, *, tasks: int, until: asyncio.Event, minimum: int) -> None:
        async def one(number: int) -> None:
            owned: list[str] = []
            while self.events < minimum or not until.is_set():
                if not owned or self.random.random() < 0.2:
                    owned.append(await self.create(f"t{number}"))
                else:
                    await self.change(self.random.choice(owned))

        await asyncio.gather(*(one(n) for n in range(tasks)))

    async def build(self, *, tenants: int, changes: int) -> None:
        """A fixed workload: ``tenants`` tenants with ``changes`` appends each."""

        async def one(number: int) -> None:
            tenant_id = await self.create(f"t{number}")
            for _ in range(changes):
                await self.change(tenant_id)

        await asyncio.gather(*(one(n) for n in range(tenants)))

    async def create(self, prefix: str) -> str:
        tenant_id = f"{prefix}-{new_id()}"
        name, tier = f"{tenant_id} v0", self.random.choice(TIERS)
        events: list[Event] = [TenantCreated(name=name, tier=tier)]
        if self.random.random() < 0.3:
            name = f"{tenant_id} renamed at creation"
            events.append(TenantRenamed(name=name))
        result = await self.append(tenant_id, events, 0)
        self.expected[tenant_id] = Expected(
            name=name,
            tier=tier,
            version=result.last_sequence,
            created_sequence=result.first_sequence,
        )
        return tenant_id

    async def change(self, tenant_id: str) -> None:
        row = self.expected[tenant_id]
        name, tier = row.name, row.tier
        events: list[Event] = []
        for _ in range(self.random.choice((1, 1, 1, 2, 3))):
            if self.random.random() < 0.6:
                name = f"{tenant_id} v{self.random.randrange(10**6)}"
                events.append(TenantRenamed(name=name))
            else:
                tier = self.random.choice(TIERS)
                events.append(TenantTierChanged(tier=tier))
        result = await self.append(tenant_id, events, row.version)
        row.name, row.tier, row.version = name, tier, result.last_sequence

    async def append(
        self, tenant_id: str, events: list[Event], version: int
    ) -> AppendResult:
        result = await self.store.append(
            AggregateRef(tenant_id, "tenant", tenant_id),
            events,
            expected_version=version,
            context=CommandContext(actor="workload"),
        )
        self.events += len(events)
        return result


async def table_rows(engine: AsyncEngine) -> list[Row]:
    query = select(
        tenants.c.tenant_id,
        tenants.c.name,
        tenants.c.tier,
        tenants.c.version,
        tenants.c.created_at,
        tenants.c.updated_at,
    ).order_by(tenants.c.tenant_id)
    async with engine.connect() as connection:
        return [tuple(row) for row in await connection.execute(query)]


async def divergent_rows(
    engine: AsyncEngine, store: JetStreamEventStore, workload: Workload
) -> list[str]:
    """Tenants whose row differs from the workload's own fold (or is missing)."""
    times: dict[int, datetime] = {r.sequence: r.recorded_at async for r in store.read()}
    rows = {row[0]: row for row in await table_rows(engine)}
    divergent = [tenant_id for tenant_id in rows if tenant_id not in workload.expected]
    for tenant_id, want in workload.expected.items():
        row = rows.get(tenant_id)
        wanted = (tenant_id, want.name, want.tier, want.version)
        if row is None or row[:4] != wanted:
            divergent.append(tenant_id)
            continue
        created, updated = times[want.created_sequence], times[want.version]
        if (row[4], row[5]) != (created, updated):
            divergent.append(tenant_id)
    return divergent


async def checkpoint_of(engine: AsyncEngine, name: str = "tenants") -> int:
    async with engine.connect() as connection:
        checkpoints = await read_checkpoints(connection)
    return checkpoints[name].last_sequence if name in checkpoints else 0


async def project_until_caught_up(
    runner: ProjectionRunner, engine: AsyncEngine, sequence: int
) -> None:
    """Run ``runner`` as the projector would until it has applied ``sequence``."""
    stopping = asyncio.Event()
    running = asyncio.create_task(runner.run(stopping))
    waiting = asyncio.create_task(
        wait_projected(engine, runner.spec.name, sequence, timeout=30)
    )
    try:
        await asyncio.wait({running, waiting}, return_when=asyncio.FIRST_COMPLETED)
        if running.done():
            running.result()
            raise AssertionError("the runner stopped before catching up")
        waiting.result()
    finally:
        stopping.set()
        waiting.cancel()
        await asyncio.wait_for(
            asyncio.gather(running, waiting, return_exceptions=True), 10
        )


def runner_for(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
) -> ProjectionRunner:
    return ProjectionRunner(spec, spec.create(), engine, store, nc, batch_size=50)


async def fetch_all(
    nc: NatsClient, store: JetStreamEventStore, total: int
) -> list[Delivery]:
    """Every event from sequence 1, through a consumer of its own, unacknowledged."""
    subscription = await open_durable(
        nc, store, name=f"replay_{new_id()}", subject=tenants_spec().subject, after=0
    )
    deliveries: list[Delivery] = []
    try:
        while len(deliveries) < total:
            batch = await subscription.fetch(total - len(deliveries), timeout=2.0)
            assert batch, f"the consumer stopped after {len(deliveries)} of {total}"
            deliveries.extend(batch)
    finally:
        await subscription.close()
    return deliveries


async def test_projector_killed_between_commit_and_ack_applies_nothing_twice(
    nats_url: str, nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    """The crashed runner committed a batch but never acked it; its successor
    starts from the checkpoint and applies each remaining event exactly once."""
    workload = Workload(store, seed=8)
    await workload.build(tenants=40, changes=6)
    last = await store.last_sequence()
    spec = tenants_spec()

    crashed_nc = await nats.connect(nats_url)
    crashed_store = JetStreamEventStore(crashed_nc, REGISTRY, stream=store.stream)
    crashed = runner_for(spec, engine, crashed_store, crashed_nc)
    async with engine.begin() as connection:
        await ensure_checkpoint(connection, spec.name, spec.version)
    subscription = await open_durable(
        crashed_nc,
        crashed_store,
        name=crashed.consumer_name,
        subject=spec.subject,
        after=0,
    )
    deliveries = await subscription.fetch(100, timeout=2.0)
    committed = await crashed.apply_batch(deliveries)
    consumer = await nc.jetstream().consumer_info(store.stream, crashed.consumer_name)
    await crashed_nc.close()  # the process dies before `subscription.ack`

    restarted = runner_for(spec, engine, store, nc)
    await project_until_caught_up(restarted, engine, last)

    assert consumer.ack_floor is not None and consumer.ack_floor.stream_seq == 0
    assert committed == len(deliveries) > 0
    assert committed + restarted.applied == workload.events
    assert await checkpoint_of(engine) == last
    assert await divergent_rows(engine, store, workload) == []


def start_projector(
    nats_url: str, database_url: str, log: Path
) -> subprocess.Popen[bytes]:
    """The real ``nextra projector`` process, as a deployment runs it."""
    env = {
        **os.environ,
        "NEXTRA_NATS_URL": nats_url,
        "NEXTRA_DATABASE_URL": database_url,
        "NEXTRA_LOG_FORMAT": "json",
        "NEXTRA_LOG_LEVEL": "info",
        # Small batches: many commit-then-ack windows for a kill to land in.
        "NEXTRA_PROJECTOR_BATCH_SIZE": "25",
    }
    script = Path(sys.executable).parent / "nextra"  # the console script
    command = [str(script)] if script.is_file() else [sys.executable, "-m", "nextra"]
    with log.open("ab") as output:
        return subprocess.Popen(
            [*command, "projector"],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


async def wait_for_progress(
    engine: AsyncEngine,
    past: int,
    process: subprocess.Popen[bytes],
    log: Path,
    timeout: float = 30,
) -> int:
    """The checkpoint once a commit moved it beyond ``past``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if process.poll() is not None:
            message = f"the projector exited with {process.returncode}:\n"
            raise AssertionError(message + log.read_text()[-3000:])
        reached = await checkpoint_of(engine)
        if reached > past:
            return reached
        await asyncio.sleep(0.02)
    raise AssertionError(
        f"the projector did not move past sequence {past} in {timeout}s"
    )


async def test_projector_process_sigkilled_repeatedly_converges_to_the_fold(
    nats_url: str,
    database_url: str,
    store: JetStreamEventStore,
    engine: AsyncEngine,
    tmp_path: Path,
) -> None:
    kills, rng = 3, random.Random()
    log = tmp_path / "projector.log"
    workload = Workload(store, seed=rng.randrange(10**6))
    killed = asyncio.Event()
    appending = asyncio.create_task(workload.run(tasks=8, until=killed, minimum=3000))
    processes: list[subprocess.Popen[bytes]] = []
    loop = asyncio.get_running_loop()
    try:
        reached, killed_at = 0, []
        for _ in range(kills):
            processes.append(start_projector(nats_url, database_url, log))
            reached = await wait_for_progress(engine, reached, processes[-1], log)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            processes[-1].send_signal(signal.SIGKILL)
            await asyncio.to_thread(processes[-1].wait)
            reached = await checkpoint_of(engine)
            killed_at.append(reached)
        killed.set()
        await asyncio.wait_for(appending, 60)
        last = await store.last_sequence()

        processes.append(start_projector(nats_url, database_url, log))
        restarted = loop.time()
        await wait_projected(engine, "tenants", last, timeout=30)
        caught_up_in = loop.time() - restarted
        processes[-1].terminate()
        code = await asyncio.to_thread(processes[-1].wait, 10)
    finally:
        killed.set()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if not appending.done():
            appending.cancel()

    print(
        f"\nA8 projector SIGKILL: kills={kills} at checkpoints {killed_at}, "
        f"events={workload.events} tenants={len(workload.expected)} "
        f"last_sequence={last} caught up {caught_up_in:.2f}s after the last restart"
    )
    assert code == 0, log.read_text()[-3000:]
    assert await checkpoint_of(engine) == last
    assert await divergent_rows(engine, store, workload) == []


async def test_rebuild_gives_the_rows_of_the_live_projection_every_time(
    nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    workload = Workload(store, seed=9)
    await workload.build(tenants=30, changes=8)
    last = await store.last_sequence()
    spec = tenants_spec()
    await project_until_caught_up(runner_for(spec, engine, store, nc), engine, last)
    live = await table_rows(engine)

    first = await rebuild_projection(spec, spec.create(), engine, store, batch_size=100)
    rebuilt = await table_rows(engine)
    second = await rebuild_projection(spec, spec.create(), engine, store, batch_size=77)
    again = await table_rows(engine)

    assert rebuilt == live
    assert again == rebuilt
    assert first.events == second.events == workload.events
    assert first.last_sequence == second.last_sequence == last
    assert await checkpoint_of(engine) == last
    assert await divergent_rows(engine, store, workload) == []


async def test_applying_each_batch_twice_changes_nothing(
    nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    workload = Workload(store, seed=10)
    await workload.build(tenants=30, changes=5)
    deliveries = await fetch_all(nc, store, workload.events)
    spec = tenants_spec()
    runner = runner_for(spec, engine, store, nc)
    async with engine.begin() as connection:
        await ensure_checkpoint(connection, spec.name, spec.version)

    applied, again = [], []
    for start in range(0, len(deliveries), 40):
        batch = deliveries[start : start + 40]
        applied.append(await runner.apply_batch(batch))
        before = await table_rows(engine)
        again.append(await runner.apply_batch(batch))
        assert await table_rows(engine) == before

    assert sum(applied) == workload.events
    assert set(again) == {0}
    assert await divergent_rows(engine, store, workload) == []


async def test_redelivering_the_whole_stream_after_catch_up_changes_nothing(
    nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    """A second consumer from sequence 1 (a redelivery storm, a stale consumer)
    hands every event to a runner again; the checkpoint turns each away."""
    workload = Workload(store, seed=11)
    await workload.build(tenants=30, changes=5)
    last = await store.last_sequence()
    spec = tenants_spec()
    await project_until_caught_up(runner_for(spec, engine, store, nc), engine, last)
    before = await table_rows(engine)

    replay = runner_for(spec, engine, store, nc)
    deliveries = await fetch_all(nc, store, workload.events)
    applied = [
        await replay.apply_batch(deliveries[start : start + 50])
        for start in range(0, len(deliveries), 50)
    ]

    assert set(applied) == {0}
    assert await table_rows(engine) == before
    assert await checkpoint_of(engine) == last


async def test_an_event_has_the_same_time_through_a_consumer_and_a_direct_get(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    workload = Workload(store, seed=12)
    await workload.build(tenants=20, changes=2)
    direct = {r.sequence: r.recorded_at async for r in store.read()}

    delivered = {
        d.sequence: d.event.recorded_at for d in await fetch_all(nc, store, 60)
    }

    assert delivered == {sequence: direct[sequence] for sequence in delivered}


async def test_rebuild_reproduces_the_live_rows_including_their_timestamps(
    nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    """Projection's contract: a rebuild from the first event gives the same tables."""
    workload = Workload(store, seed=13)
    await workload.build(tenants=30, changes=3)
    last = await store.last_sequence()
    spec = tenants_spec()
    await project_until_caught_up(runner_for(spec, engine, store, nc), engine, last)
    live = await table_rows(engine)

    await rebuild_projection(spec, spec.create(), engine, store)

    assert await table_rows(engine) == live


async def wait_for_a_lock_waiter(engine: AsyncEngine, timeout: float = 20) -> None:
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        async with engine.connect() as connection:
            if (await connection.execute(query)).scalar():
                return
        await asyncio.sleep(0.02)
    raise AssertionError(f"nobody waited for the checkpoint lock within {timeout}s")


async def test_rebuild_takes_over_from_a_live_projector_that_moved_on_meanwhile(
    nc: NatsClient, store: JetStreamEventStore, engine: AsyncEngine
) -> None:
    """The case the swap's catch-up exists for, made deterministic: a live batch
    holds the checkpoint row while the rebuild finishes reading, and commits
    events the rebuild has not read."""
    workload = Workload(store, seed=15)
    await workload.build(tenants=10, changes=3)
    spec = tenants_spec()
    first = await store.last_sequence()
    await project_until_caught_up(runner_for(spec, engine, store, nc), engine, first)

    async with engine.begin() as connection:
        await lock_checkpoint(connection, spec.name)
        rebuilding = asyncio.create_task(
            rebuild_projection(spec, spec.create(), engine, store)
        )
        await wait_for_a_lock_waiter(engine)
        for tenant_id in list(workload.expected)[:5]:
            await workload.change(tenant_id)
        tail = [r async for r in store.read(after=first, subject=spec.subject)]
        await spec.create().apply(connection, tail)
        await connection.execute(
            update(projection_checkpoints)
            .where(projection_checkpoints.c.projection == spec.name)
            .values(last_sequence=tail[-1].sequence)
        )
    report = await asyncio.wait_for(rebuilding, 30)

    assert report.last_sequence == tail[-1].sequence
    assert await checkpoint_of(engine) == tail[-1].sequence
    assert await divergent_rows(engine, store, workload) == []
