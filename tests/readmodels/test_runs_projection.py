"""The runs read model, folded from run events appended to the real NX_RUNS stream."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.events.base import Event
from nextra.events.envelope import CommandContext
from nextra.events.runs import (
    DroppedMessage,
    LogLine,
    Message,
    MessageKind,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunLimits,
    RunTriggered,
    StepCompleted,
    StepError,
    StepOutcome,
    Trigger,
)
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import ALL_RUNS, run_aggregate
from nextra.kernel.ids import new_id
from nextra.readmodels.checkpoints import wait_projected
from nextra.readmodels.projection import ProjectionSpec, load_catalogue
from nextra.readmodels.rebuild import rebuild_projection
from nextra.readmodels.runner import ProjectionRunner
from nextra.readmodels.runs import (
    RunsProjection,
    overdue_runs,
    read_run,
    read_runs,
)
from nextra.readmodels.tables import run_messages, run_steps, runs

LIMITS = RunLimits(
    max_hops=50,
    handler_timeout_seconds=30,
    deadline_seconds=300,
    max_payload_bytes=65536,
    max_fan_out=10,
    max_llm_tokens=10000,
)
AT = datetime(2026, 12, 5, 9, 30, tzinfo=UTC)


def message(
    id: str,
    sender: str,
    to: str,
    payload: dict[str, Any],
    *,
    kind: MessageKind = "forward",
    payload_type: str = "Note",
    receivers: int = 1,
) -> Message:
    return Message(
        id=id,
        kind=kind,
        sender=sender,
        to=to,
        payload_type=payload_type,
        payload=payload,
        chain=(sender, to),
        thread_id=f"thread-{sender}-{to}",
        receivers=receivers,
    )


def step(
    message_id: str,
    listener: str,
    *,
    sent: Sequence[Message] = (),
    entry: int = 0,
    outcome: StepOutcome = "ok",
    duration_ms: float = 12.5,
    **fields: Any,
) -> StepCompleted:
    return StepCompleted(
        message_id=message_id,
        listener=listener,
        entry=entry,
        outcome=outcome,
        sent=tuple(sent),
        started_at=AT,
        duration_ms=duration_ms,
        **fields,
    )


class RunWriter:
    """Appends one run's events one by one, as workers would."""

    def __init__(
        self, store: JetStreamEventStore, tenant_id: str, flow_id: str
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.flow_id = flow_id
        self.run_id = new_id()
        self.last_sequence = 0

    async def append(self, event: Event) -> int:
        result = await self.store.append(
            run_aggregate(self.tenant_id, self.flow_id, self.run_id),
            [event],
            expected_version=None,
            context=CommandContext(actor="api-key:test"),
        )
        self.last_sequence = result.last_sequence
        return result.last_sequence

    async def trigger(
        self, payload: dict[str, Any], *, deadline: datetime | None = None
    ) -> int:
        first = message(
            "1", "api-key:test", "greeter", payload, kind="trigger", receivers=2
        )
        return await self.append(
            RunTriggered(
                run_id=self.run_id,
                flow_id=self.flow_id,
                revision=3,
                tier="pro",
                trigger=Trigger(kind="manual", source="api-key:test"),
                message=first,
                limits=LIMITS,
                deadline=deadline or datetime.now(UTC) + timedelta(minutes=5),
            )
        )


async def completed_run(store: JetStreamEventStore, tenant: str, flow: str) -> str:
    """Greeter (two entries) forwards to shouter, which answers the trigger."""
    run = RunWriter(store, tenant, flow)
    await run.trigger({"name": "Ada"})
    forwarded = message("2", "greeter", "shouter", {"text": "hello Ada"})
    await run.append(
        step(
            "1",
            "greeter",
            sent=[forwarded],
            logs=(LogLine(at=AT, level="info", message="greeting Ada"),),
        )
    )
    await run.append(step("1", "greeter", entry=1, duration_ms=3.0))
    # A respond that reaches the trigger: the run's output, for no listener.
    answer = message(
        "3",
        "shouter",
        "api-key:test",
        {"text": "HELLO ADA"},
        kind="respond",
        receivers=0,
    )
    await run.append(step("2", "shouter", sent=[answer], responded=True))
    await run.append(
        RunCompleted(output_type="Note", output={"text": "HELLO ADA"}, steps=3)
    )
    return run.run_id


async def failed_run(store: JetStreamEventStore, tenant: str, flow: str) -> str:
    """The greeter raises after trying to send to nobody."""
    run = RunWriter(store, tenant, flow)
    await run.trigger({"name": "Bob"})
    lost = DroppedMessage(
        reason="unroutable",
        detail="no listener named 'nobody' takes Note",
        sender="greeter",
        to="nobody",
        payload_type="Note",
        payload={"text": "?"},
    )
    await run.append(
        step(
            "1",
            "greeter",
            outcome="error",
            error=StepError(code="handler_error", message="KeyError: 'name'"),
            dropped=(lost,),
            attempt=2,
        )
    )
    await run.append(
        RunFailed(
            reason="handler_error",
            message="greeter raised KeyError: 'name'",
            listener="greeter",
            steps=1,
        )
    )
    return run.run_id


async def cancelled_run(store: JetStreamEventStore, tenant: str, flow: str) -> str:
    run = RunWriter(store, tenant, flow)
    await run.trigger({"name": "Cy"})
    await run.append(RunCancelled(reason="stopped by user:u1", steps=0))
    return run.run_id


async def running_run(
    store: JetStreamEventStore,
    tenant: str,
    flow: str,
    *,
    deadline: datetime | None = None,
) -> str:
    run = RunWriter(store, tenant, flow)
    await run.trigger({"name": "Di"}, deadline=deadline)
    await run.append(
        step("1", "greeter", sent=[message("2", "greeter", "shouter", {"t": 1})])
    )
    return run.run_id


@pytest.fixture
def spec(root: Path) -> ProjectionSpec:
    return next(s for s in load_catalogue(root / "projections") if s.name == "runs")


async def project(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    store: JetStreamEventStore,
    nc: NatsClient,
    *,
    batch_size: int = 500,
) -> None:
    """Run the projection until it has every event of the stream."""
    newest = await store.last_sequence(ALL_RUNS)
    runner = ProjectionRunner(
        spec, spec.create(), engine, store, nc, batch_size=batch_size
    )
    stopping = asyncio.Event()
    task = asyncio.create_task(runner.run(stopping))
    try:
        await wait_projected(engine, "runs", newest, timeout=10)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


async def snapshot(engine: AsyncEngine) -> dict[str, list[tuple[Any, ...]]]:
    async with engine.connect() as connection:
        return {
            table.name: [
                tuple(row)
                for row in await connection.execute(
                    select(table).order_by(*table.primary_key.columns)
                )
            ]
            for table in (runs, run_messages, run_steps)
        }


@pytest.fixture
async def seeded(
    runs_store: JetStreamEventStore,
) -> dict[str, str]:
    tenant, other, flow = new_id(), new_id(), new_id()
    return {
        "tenant": tenant,
        "other": other,
        "flow": flow,
        "completed": await completed_run(runs_store, tenant, flow),
        "failed": await failed_run(runs_store, tenant, flow),
        "cancelled": await cancelled_run(runs_store, tenant, flow),
        "overdue": await running_run(
            runs_store, tenant, flow, deadline=datetime.now(UTC) - timedelta(minutes=1)
        ),
        "running": await running_run(runs_store, tenant, flow),
        # The same flow id in another tenant: never seen by the first.
        "foreign": await completed_run(runs_store, other, flow),
    }


async def test_runs_are_listed_newest_first_with_their_outcome(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc, batch_size=3)

    async with engine.connect() as connection:
        page = await read_runs(connection, seeded["tenant"], seeded["flow"])
        foreign = await read_runs(connection, seeded["other"], seeded["flow"])

    assert [r.run_id for r in page.items] == [
        seeded[name]
        for name in ("running", "overdue", "cancelled", "failed", "completed")
    ]
    assert page.next_cursor is None
    by_id = {r.run_id: r for r in page.items}
    done = by_id[seeded["completed"]]
    assert (done.status, done.steps, done.output_type, done.revision) == (
        "completed",
        3,
        "Note",
        3,
    )
    assert (done.trigger_kind, done.trigger_source) == ("manual", "api-key:test")
    assert done.finished_at is not None and done.duration_ms is not None
    assert done.duration_ms == round(
        (done.finished_at - done.triggered_at).total_seconds() * 1000
    )
    failed = by_id[seeded["failed"]]
    assert (
        failed.status,
        failed.error_reason,
        failed.error_listener,
        failed.steps,
    ) == ("failed", "handler_error", "greeter", 1)
    cancelled = by_id[seeded["cancelled"]]
    assert (cancelled.status, cancelled.error_message) == (
        "cancelled",
        "stopped by user:u1",
    )
    running = by_id[seeded["running"]]
    assert (running.status, running.steps, running.finished_at) == ("running", 1, None)
    assert [r.run_id for r in foreign.items] == [seeded["foreign"]]


async def test_a_run_reads_back_with_its_step_timeline(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc, batch_size=1)

    async with engine.connect() as connection:
        done = await read_run(connection, seeded["tenant"], seeded["completed"])
        failed = await read_run(connection, seeded["tenant"], seeded["failed"])
        stranger = await read_run(connection, seeded["other"], seeded["completed"])

    assert done is not None and failed is not None
    assert stranger is None
    assert done.output == {"text": "HELLO ADA"}
    assert done.input is not None
    assert (done.input.sender, done.input.payload) == ("api-key:test", {"name": "Ada"})
    assert [(s.message_id, s.entry, s.listener) for s in done.steps] == [
        ("1", 0, "greeter"),
        ("1", 1, "greeter"),
        ("2", 0, "shouter"),
    ]
    first, second, third = done.steps
    assert (first.sender, first.payload_type, first.payload) == (
        "api-key:test",
        "Note",
        {"name": "Ada"},
    )
    assert first.sent == ["2"] and second.sent == []
    assert [(line.level, line.message, line.at) for line in first.logs] == [
        ("info", "greeting Ada", AT)
    ]
    assert (first.outcome, first.started_at, first.duration_ms) == ("ok", AT, 12.5)
    # The shouter's incoming message is the one the greeter sent on.
    assert (third.sender, third.payload, third.chain, third.thread_id) == (
        "greeter",
        {"text": "hello Ada"},
        ["greeter", "shouter"],
        "thread-greeter-shouter",
    )
    assert third.sent == ["3"]

    [broken] = failed.steps
    assert (broken.outcome, broken.error_code, broken.attempt) == (
        "error",
        "handler_error",
        2,
    )
    assert [(d.reason, d.to) for d in broken.dropped] == [("unroutable", "nobody")]


async def test_cursor_pages_and_filters_by_status_and_time(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc)
    tenant, flow = seeded["tenant"], seeded["flow"]

    async with engine.connect() as connection:
        everything = (await read_runs(connection, tenant, flow)).items
        pages, cursor = [], None
        while True:
            page = await read_runs(connection, tenant, flow, cursor=cursor, limit=2)
            pages.append([r.run_id for r in page.items])
            cursor = page.next_cursor
            if cursor is None:
                break
        running = await read_runs(connection, tenant, flow, status="running")
        middle = everything[2].triggered_at
        since = await read_runs(connection, tenant, flow, since=middle)
        until = await read_runs(connection, tenant, flow, until=middle)

    ids = [r.run_id for r in everything]
    assert pages == [ids[0:2], ids[2:4], ids[4:5]]
    assert [r.run_id for r in running.items] == [seeded["running"], seeded["overdue"]]
    assert [r.run_id for r in since.items] == ids[:3]
    assert [r.run_id for r in until.items] == ids[3:]


async def test_overdue_runs_are_the_running_ones_past_their_deadline(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc)

    overdue = await overdue_runs(engine, datetime.now(UTC), limit=10)
    later = await overdue_runs(engine, datetime.now(UTC) + timedelta(hours=1))

    assert overdue == [(seeded["tenant"], seeded["flow"], seeded["overdue"])]
    assert set(later) == {
        (seeded["tenant"], seeded["flow"], seeded["overdue"]),
        (seeded["tenant"], seeded["flow"], seeded["running"]),
    }


async def test_applying_events_again_changes_nothing(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc, batch_size=2)
    before = await snapshot(engine)
    events = [e async for e in runs_store.read(subject=ALL_RUNS)]

    # Past the checkpoint's protection: the statements themselves are idempotent.
    async with engine.begin() as connection:
        await RunsProjection().apply(connection, events)
    for event in events:
        async with engine.begin() as connection:
            await RunsProjection().apply(connection, [event])

    assert await snapshot(engine) == before
    assert len(before["runs"]) == 6
    assert len(before["run_steps"]) == 9


async def test_a_rebuild_gives_the_rows_of_the_live_projection(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
    seeded: dict[str, str],
) -> None:
    await project(spec, engine, runs_store, nc, batch_size=1)
    live = await snapshot(engine)

    whole = await rebuild_projection(spec, spec.create(), engine, runs_store)
    rebuilt = await snapshot(engine)
    await rebuild_projection(spec, spec.create(), engine, runs_store, batch_size=4)

    assert whole.events == await runs_store.last_sequence(ALL_RUNS)
    assert rebuilt == live
    assert await snapshot(engine) == live


async def test_a_step_committed_after_the_runs_end_leaves_it_ended(
    spec: ProjectionSpec,
    engine: AsyncEngine,
    runs_store: JetStreamEventStore,
    nc: NatsClient,
) -> None:
    tenant, flow = new_id(), new_id()
    run = RunWriter(runs_store, tenant, flow)
    await run.trigger({"name": "Hal"})
    await run.append(step("1", "greeter"))
    await run.append(RunCancelled(reason="stopped", steps=1))
    await run.append(step("1", "greeter", entry=1))

    await project(spec, engine, runs_store, nc)

    async with engine.connect() as connection:
        detail = await read_run(connection, tenant, run.run_id)
    assert detail is not None
    assert (detail.run.status, detail.run.steps) == ("cancelled", 2)
    assert detail.run.version == run.last_sequence
