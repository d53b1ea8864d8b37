"""Limits that span workers and time: per-flow concurrency, deadlines, watchdog."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NatsClient

from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef
from nextra.events.runs import RunFailed
from nextra.eventstore.flowqueues import FlowQueues
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import run_aggregate
from nextra.kernel.ids import new_id
from nextra.runtime.worker.executor import StepRunner
from nextra.runtime.worker.pump import Worker, WorkerSettings
from tests.runtime.conftest import TRUSTED, Runtime, build_runs, worker_running
from tests.runtime.flowkit import CALLS, PEAK
from tests.runtime.test_semantics import listener, organism


def runtime_on(
    nc: NatsClient,
    store: JetStreamEventStore,
    clock: Callable[[], datetime] | None = None,
    *,
    ack_wait: float = 2.0,
) -> Runtime:
    runs_store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)
    queues = FlowQueues(nc, runs_store)
    runs = build_runs(nc, store, runs_store, queues, clock=clock, ack_wait=ack_wait)
    return Runtime(store, runs_store, runs)


async def test_a_flows_concurrency_limit_holds_across_workers(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    runtime = runtime_on(nc, store)
    flow = await runtime.flow(
        organism(listener("c", "counted"), extra="max_concurrent_handlers: 2\n")
    )
    tag = new_id()
    settings = WorkerSettings(ack_wait=5.0, scan_interval=0.2)

    async with contextlib.AsyncExitStack() as workers:
        for _ in range(3):
            await workers.enter_async_context(
                worker_running(nc, store, runtime.runs_store, settings)
            )
        triggered = [await runtime.trigger(flow, {"text": tag}) for _ in range(12)]
        for run in triggered:
            await runtime.ended(flow, run.run_id)

    assert PEAK[tag] == 2


async def test_a_fan_out_runs_no_more_handlers_at_once_than_its_flow_allows(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    runtime = runtime_on(nc, store)
    flow = await runtime.flow(
        organism(
            listener("a", "fan_out_counted"),
            listener("c", "counted"),
            extra="max_concurrent_handlers: 2\n",
        )
    )
    tag = new_id()
    settings = WorkerSettings(ack_wait=5.0, scan_interval=0.2)

    async with worker_running(nc, store, runtime.runs_store, settings):
        state = await runtime.run(flow, {"text": tag})

    assert state.status == "completed"
    assert [call.listener for call in CALLS[state.run_id]].count("counted") == 5
    assert PEAK[tag] == 2


async def test_a_stopping_worker_gives_back_the_steps_it_could_not_finish(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    # A step in hand is handed out again after 30 s, unless it is given back.
    runtime = runtime_on(nc, store, ack_wait=30.0)
    flow = await runtime.flow(organism(listener("long", "long_first_time")))
    settings = WorkerSettings(ack_wait=30.0, scan_interval=0.2, shutdown_grace=0.2)

    async with worker_running(nc, store, runtime.runs_store, settings):
        triggered = await runtime.trigger(flow, {"text": "x"})
        async with asyncio.timeout(10):
            while not CALLS[triggered.run_id]:
                await asyncio.sleep(0.01)
    async with worker_running(nc, store, runtime.runs_store, settings):
        state = await runtime.ended(flow, triggered.run_id, timeout=10)

    assert state.status == "completed"
    assert [call.attempt for call in CALLS[triggered.run_id]] == [1, 2]


async def test_a_run_past_its_deadline_runs_no_step(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    runtime = runtime_on(nc, store, lambda: long_ago)
    flow = await runtime.flow(organism(listener("echo", "echo_verbatim")), "free")
    settings = WorkerSettings(ack_wait=5.0, scan_interval=0.2)

    async with worker_running(nc, store, runtime.runs_store, settings):
        state = await runtime.run(flow, {"text": "late"})

    events = await runtime.events(flow, state.run_id)
    ending = events[-1].event
    assert isinstance(ending, RunFailed)
    assert ending.reason == "deadline"
    assert CALLS[state.run_id] == []


async def test_the_watchdog_fails_an_open_run_past_its_deadline(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    long_ago = datetime.now(UTC) - timedelta(hours=1)
    runtime = runtime_on(nc, store, lambda: long_ago)
    flow = await runtime.flow(organism(listener("echo", "echo_verbatim")), "free")
    # No worker takes the step: the run would stay open but for the watchdog.
    triggered = await runtime.trigger(flow, {"text": "stuck"})
    overdue = [run_aggregate(flow.tenant_id, flow.flow_id, triggered.run_id)]

    async def find_overdue() -> Sequence[AggregateRef]:
        return overdue

    queues = FlowQueues(nc, runtime.runs_store)
    runs = build_runs(nc, store, runtime.runs_store, queues)
    watchdog = Worker(
        nc,
        queues,
        runs,
        StepRunner(TRUSTED),
        WorkerSettings(watchdog_interval=0.1, scan_interval=60),
        overdue=find_overdue,
    )
    # The watchdog alone: a worker whose scheduler never hears of the flow.
    stopping = asyncio.Event()
    task = asyncio.create_task(watchdog._watch(stopping))
    try:
        state = await runtime.ended(flow, triggered.run_id)
    finally:
        stopping.set()
        await asyncio.wait_for(task, 5)

    events = await runtime.events(flow, state.run_id)
    ending = events[-1].event
    assert isinstance(ending, RunFailed)
    assert ending.reason == "deadline"
