"""A store that does not answer for a moment costs a step no delivery."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncGenerator

from nats.aio.client import Client as NatsClient

from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import RecordedEvent
from nextra.events.runs import StepRetried
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import ALL_EVENTS
from nextra.kernel.errors import EventStoreTimeout
from nextra.runtime.worker.pump import WorkerSettings
from tests.runtime.conftest import worker_running
from tests.runtime.flowkit import CALLS
from tests.runtime.test_limits import runtime_on
from tests.runtime.test_semantics import listener, order, organism


class UnansweredReads(JetStreamEventStore):
    """The real runs store, whose every other read of a run times out.

    It stands for a NATS server that misses a few requests: the reads that
    fail never reach it, the others go to it unchanged.
    """

    def __init__(self, nc: NatsClient) -> None:
        super().__init__(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)
        self.reads: Counter[str] = Counter()

    async def read(
        self, *, after: int = 0, subject: str = ALL_EVENTS
    ) -> AsyncGenerator[RecordedEvent, None]:
        self.reads[subject] += 1
        if self.reads[subject] % 2 == 1:
            raise EventStoreTimeout("no answer (injected)", where=subject)
        async for recorded in super().read(after=after, subject=subject):
            yield recorded


async def test_reads_the_store_misses_are_tried_again_without_a_redelivery(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    runtime = runtime_on(nc, store)
    flow = await runtime.flow(
        organism(
            listener("a", "chain_a"), listener("b", "chain_b"), listener("c", "chain_c")
        )
    )
    flaky = UnansweredReads(nc)
    settings = WorkerSettings(ack_wait=5.0, scan_interval=0.2)

    async with worker_running(nc, store, flaky, settings):
        triggered = [await runtime.trigger(flow, {"text": "x"}) for _ in range(5)]
        ended = [await runtime.ended(flow, run.run_id) for run in triggered]

    assert {state.status for state in ended} == {"completed"}
    assert sum(flaky.reads.values()) >= 2 * 5
    for state in ended:
        assert order(state.run_id) == ["a", "b", "c"]
        events = await runtime.events(flow, state.run_id)
        assert not [e for e in events if isinstance(e.event, StepRetried)]
        assert len(CALLS[state.run_id]) == 3
