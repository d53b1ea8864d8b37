"""A worker running in the test's event loop against real JetStream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest
from nats.aio.client import Client as NatsClient

from nextra.app.flows import FlowCommands
from nextra.app.organisms import Organisms
from nextra.app.runs import RunCommands, Triggered
from nextra.app.tenants import TenantCommands
from nextra.domain.flows import HandlerPolicy, validate_organism
from nextra.domain.flows.validate import load_organism
from nextra.domain.runs.state import RunState
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import CommandContext, RecordedEvent
from nextra.events.tenants import Tier
from nextra.eventstore.flowqueues import FlowQueues, QueueSettings, wake_subject
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import run_aggregate
from nextra.kernel.ids import new_id
from nextra.runtime.worker.executor import StepRunner, capture_handler_logs
from nextra.runtime.worker.pump import Worker, WorkerSettings

TRUSTED = ("tests.",)
POLICY = HandlerPolicy(trusted_python_prefixes=TRUSTED)


@dataclass
class Flow:
    tenant_id: str
    flow_id: str
    tier: Tier


@dataclass
class Runtime:
    """Flows, triggers and a worker, with helpers to wait for a run's end."""

    store: JetStreamEventStore
    runs_store: JetStreamEventStore
    runs: RunCommands

    async def flow(self, organism_yaml: str, tier: Tier = "pro") -> Flow:
        tenant_id = new_id()
        await TenantCommands(self.store).create(
            tenant_id, "T", tier=tier, context=CommandContext()
        )
        flows = FlowCommands(self.store, partial(validate_organism, policy=POLICY))
        saved = await flows.create(
            tenant_id, name="F", organism_yaml=organism_yaml, context=CommandContext()
        )
        await flows.start(tenant_id, saved.flow_id, context=CommandContext())
        return Flow(tenant_id, saved.flow_id, tier)

    async def trigger(
        self, flow: Flow, payload: dict[str, Any] | str, payload_type: str = "Msg"
    ) -> Triggered:
        return await self.runs.trigger(
            flow.tenant_id,
            flow.flow_id,
            tier=flow.tier,
            source="user:tester",
            payload_type=payload_type,
            payload=payload,
        )

    async def ended(self, flow: Flow, run_id: str, timeout: float = 15.0) -> RunState:
        """The run's state once it has ended."""
        run = run_aggregate(flow.tenant_id, flow.flow_id, run_id)
        deadline = asyncio.get_running_loop().time() + timeout
        while True:
            state = RunState()
            async for recorded in self.runs_store.read(
                subject=f"nx.run.{flow.tenant_id}.{flow.flow_id}.{run_id}"
            ):
                state.apply(recorded.event, recorded.sequence)
            if state.finished:
                return state
            if asyncio.get_running_loop().time() > deadline:
                pytest.fail(f"run {run} did not end in {timeout}s")
            await asyncio.sleep(0.02)

    async def run(
        self, flow: Flow, payload: dict[str, Any] | str, payload_type: str = "Msg"
    ) -> RunState:
        triggered = await self.trigger(flow, payload, payload_type)
        return await self.ended(flow, triggered.run_id)

    async def events(self, flow: Flow, run_id: str) -> list[RecordedEvent]:
        subject = f"nx.run.{flow.tenant_id}.{flow.flow_id}.{run_id}"
        return [recorded async for recorded in self.runs_store.read(subject=subject)]


def build_runs(
    nc: NatsClient,
    store: JetStreamEventStore,
    runs_store: JetStreamEventStore,
    queues: FlowQueues,
    *,
    ack_wait: float = 2.0,
    max_deliver: int = 5,
    clock: Callable[[], datetime] | None = None,
) -> RunCommands:
    organisms = Organisms(store, partial(load_organism, policy=POLICY))

    async def prepare(tenant_id: str, flow_id: str, in_flight: int) -> None:
        settings = QueueSettings(
            max_in_flight=in_flight, ack_wait=ack_wait, max_deliver=max_deliver + 1
        )
        await queues.ensure(tenant_id, flow_id, settings)

    async def announce(tenant_id: str, flow_id: str, tier: Tier) -> None:
        await nc.publish(wake_subject(tenant_id, flow_id), tier.encode())

    return RunCommands(
        runs_store,
        organisms,
        prepare=prepare,
        on_triggered=announce,
        clock=clock or (lambda: datetime.now(UTC)),
    )


@contextlib.asynccontextmanager
async def worker_running(
    nc: NatsClient,
    store: JetStreamEventStore,
    runs_store: JetStreamEventStore,
    settings: WorkerSettings,
) -> AsyncIterator[Worker]:
    queues = FlowQueues(nc, runs_store)
    runs = build_runs(nc, store, runs_store, queues, ack_wait=settings.ack_wait)
    worker = Worker(nc, queues, runs, StepRunner(TRUSTED), settings)
    stopping = asyncio.Event()
    task = asyncio.create_task(worker.run(stopping))
    try:
        yield worker
    finally:
        stopping.set()
        await asyncio.wait_for(task, 10)


@pytest.fixture
async def runtime(nc: NatsClient, store: JetStreamEventStore) -> AsyncIterator[Runtime]:
    runs_store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)
    capture_handler_logs(TRUSTED)
    settings = WorkerSettings(ack_wait=2.0, scan_interval=0.2)
    async with worker_running(nc, store, runs_store, settings):
        queues = FlowQueues(nc, runs_store)
        runs = build_runs(nc, store, runs_store, queues)
        yield Runtime(store, runs_store, runs)
