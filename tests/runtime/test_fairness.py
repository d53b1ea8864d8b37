"""Weighted fair scheduling: a flood in one tenant or flow starves no other (A10)."""

from __future__ import annotations

import asyncio
from collections import Counter

from nats.aio.client import Client as NatsClient

from nextra.events.catalogue import REGISTRY
from nextra.eventstore.flowqueues import FlowQueues
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.runtime.worker.pump import WorkerSettings
from nextra.runtime.worker.scheduler import FairScheduler
from tests.runtime.conftest import Runtime, build_runs, worker_running
from tests.runtime.test_semantics import listener, organism


def serve(scheduler: FairScheduler, turns: int, quantum: int = 10) -> Counter[str]:
    """Which tenants a worker would serve over ``turns``, all always busy."""
    served: Counter[str] = Counter()
    for _ in range(turns):
        pick = scheduler.next()
        assert pick is not None
        scheduler.served(*pick, quantum)
        served[pick[0]] += quantum
    return served


def test_tenants_share_by_tier_weight() -> None:
    scheduler = FairScheduler()
    scheduler.wake("free", "f1", "free")
    scheduler.wake("pro", "p1", "pro")

    served = serve(scheduler, 500)

    assert 3.8 < served["pro"] / served["free"] < 4.2


def test_a_flooded_flow_does_not_starve_its_sibling() -> None:
    scheduler = FairScheduler()
    scheduler.wake("t", "flood", "paid")
    scheduler.wake("t", "quiet", "paid")

    flows: Counter[str] = Counter()
    for _ in range(100):
        pick = scheduler.next()
        assert pick is not None
        scheduler.served(*pick, 10)
        flows[pick[1]] += 1

    assert flows["flood"] == flows["quiet"] == 50


def test_a_tenant_that_wakes_does_not_bring_banked_credit() -> None:
    scheduler = FairScheduler()
    scheduler.wake("a", "f", "free")
    serve(scheduler, 1000)
    scheduler.wake("b", "g", "free")

    served = serve(scheduler, 100)

    # b starts level with a and then alternates, rather than running 1000 turns.
    assert served["a"] == served["b"] == 500


def test_idle_flows_leave_and_come_back() -> None:
    scheduler = FairScheduler()
    scheduler.wake("a", "f")
    scheduler.idle("a", "f")

    assert scheduler.next() is None
    scheduler.wake("a", "f")
    assert scheduler.next() == ("a", "f")


async def test_a_quiet_tenant_runs_while_another_has_a_backlog(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    runs_store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)
    runs = build_runs(nc, store, runs_store, FlowQueues(nc, runs_store))
    runtime = Runtime(store, runs_store, runs)
    flow = organism(listener("a", "respond_at_once"))
    noisy = await runtime.flow(flow, "free")
    quiet = await runtime.flow(flow, "free")

    # The noisy tenant queues 600 runs while no worker runs...
    flood = [await runtime.trigger(noisy, {"text": str(i)}) for i in range(600)]
    settings = WorkerSettings(ack_wait=5.0, scan_interval=0.2, concurrency=8)
    async with worker_running(nc, store, runs_store, settings):
        await asyncio.sleep(0.2)
        # ...then the quiet tenant's runs arrive behind that backlog.
        quiet_runs = [await runtime.trigger(quiet, {"text": "q"}) for _ in range(10)]
        for run in quiet_runs:
            await runtime.ended(quiet, run.run_id)
        backlog_left = 0
        for run in flood[::20]:
            events = await runtime.events(noisy, run.run_id)
            backlog_left += len(events) == 1
        for run in flood:
            await runtime.ended(noisy, run.run_id, timeout=60)

    # The quiet runs did not wait for the flood to drain.
    assert backlog_left > 0, "the flood drained before the quiet runs were done"
