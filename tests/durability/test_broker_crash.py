"""A2: appends survive a SIGKILLed or paused nats-server: none lost, none twice."""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client as NatsClient

from nextra.devstack.nats import EmbeddedNats
from nextra.events.base import Event
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent
from nextra.events.tenants import (
    TenantCreated,
    TenantRenamed,
    TenantTierChanged,
    Tier,
)
from nextra.eventstore.base import AppendResult
from nextra.eventstore.jetstream import JetStreamEventStore, _PubAck, _Transient
from nextra.eventstore.topology import apply_streams, load_stream_definitions
from nextra.kernel.errors import EventStoreTimeout
from nextra.kernel.ids import new_id
from nextra.kernel.settings import project_root

WRITERS = 64
APPEND_TIMEOUT = 1.0
RETRY_WINDOW = 30.0


class SpyStore(JetStreamEventStore):
    """The real store, counting publish attempts whose outcome was unknown.

    Only observes: every request still goes to the real server. A command with at
    least one such attempt was retried under the same ids, so its outcome was
    ambiguous until the retry answered.
    """

    def __init__(self, nc: NatsClient, *, timeout: float, retry_window: float) -> None:
        super().__init__(nc, REGISTRY, timeout=timeout, retry_window=retry_window)
        self.unknown: Counter[str] = Counter()

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        *,
        empty_ok: bool = False,
    ) -> _PubAck:
        try:
            ack = await super()._request(subject, payload, headers, empty_ok=empty_ok)
        except _Transient:
            self.unknown[headers["Nx-Command-Id"]] += 1
            raise
        if ack.error is not None and ack.error.code == 503:
            self.unknown[headers["Nx-Command-Id"]] += 1
        return ack


@dataclass
class History:
    """What the writers tried, what was acknowledged, and what raised."""

    attempted: dict[str, int] = field(default_factory=dict)
    """Command id to the number of events it carries."""
    order: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    """Aggregate to its command ids in the order they were attempted."""
    acked: dict[str, AppendResult] = field(default_factory=dict)
    raised: dict[str, str] = field(default_factory=dict)
    """Command id to the name of the exception the append raised."""
    acked_after_restart: int = 0


@dataclass
class Verdict:
    """The stored stream classified against a history."""

    stored: dict[str, list[RecordedEvent]]
    lost: list[str]
    duplicated: list[str]
    unexpected: list[str]
    misreported: list[str]
    reordered: list[str]
    raised_stored: int
    raised_absent: int


@pytest.fixture
async def broker(tmp_path: Path) -> AsyncIterator[EmbeddedNats]:
    """A nats-server of this test's own, since the test kills or pauses it."""
    server = EmbeddedNats(tmp_path / "nats")
    await asyncio.to_thread(server.start)
    try:
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.kill(server.process.pid, signal.SIGCONT)
        await asyncio.to_thread(server.stop)


@pytest.fixture
async def client(broker: EmbeddedNats) -> AsyncIterator[NatsClient]:
    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(
        broker.url,
        max_reconnect_attempts=-1,
        reconnect_time_wait=0.1,
        error_cb=quiet,
    )
    definitions = load_stream_definitions(project_root() / "streams")
    await apply_streams(nc.jetstream(), definitions)
    yield nc
    await nc.close()


@pytest.fixture
def spy(client: NatsClient) -> SpyStore:
    return SpyStore(client, timeout=APPEND_TIMEOUT, retry_window=RETRY_WINDOW)


def tenant(tenant_id: str | None = None) -> AggregateRef:
    tenant_id = tenant_id or new_id()
    return AggregateRef(tenant_id, "tenant", tenant_id)


async def current_version(store: JetStreamEventStore, aggregate: AggregateRef) -> int:
    """The aggregate's version, loaded again until the server answers."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + RETRY_WINDOW
    while True:
        try:
            events = await store.load(aggregate)
        except Exception:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.1)
            continue
        return events[-1].sequence if events else 0


async def writer(
    number: int,
    store: JetStreamEventStore,
    history: History,
    stopping: asyncio.Event,
    restarted: asyncio.Event,
) -> None:
    """Append to one aggregate of its own, tracking its version like a command."""
    aggregate = tenant()
    version = 0
    step = 0
    while not stopping.is_set():
        step += 1
        events: list[Event]
        if version == 0:
            events = [TenantCreated(name=f"writer {number}")]
        elif step % 5 == 0:
            tier: Tier = random.choice(("free", "paid", "pro", "enterprise"))
            events = [
                TenantRenamed(name=f"w{number} s{step}"),
                TenantTierChanged(tier=tier),
            ]
        else:
            events = [TenantRenamed(name=f"w{number} s{step}")]
        context = CommandContext(actor=f"writer-{number}")
        history.attempted[context.command_id] = len(events)
        history.order[str(aggregate)].append(context.command_id)
        try:
            result = await store.append(
                aggregate, events, expected_version=version, context=context
            )
        except Exception as error:
            history.raised[context.command_id] = type(error).__name__
            version = await current_version(store, aggregate)
            continue
        history.acked[context.command_id] = result
        if restarted.is_set():
            history.acked_after_restart += 1
        version = result.last_sequence


async def read_back(store: JetStreamEventStore) -> dict[str, list[RecordedEvent]]:
    stored: dict[str, list[RecordedEvent]] = defaultdict(list)
    async for recorded in store.read():
        stored[recorded.command_id].append(recorded)
    return stored


async def check(store: JetStreamEventStore, history: History) -> Verdict:
    """Classify every attempted command against what the stream holds."""
    stored = await read_back(store)
    lost, duplicated, misreported = [], [], []
    for command_id, size in history.attempted.items():
        copies = stored.get(command_id, [])
        if len(copies) not in (0, size):
            duplicated.append(command_id)
        if command_id in history.acked:
            if not copies:
                lost.append(command_id)
                continue
            result = history.acked[command_id]
            span = (copies[0].sequence, copies[-1].sequence)
            if span != (result.first_sequence, result.last_sequence):
                misreported.append(command_id)
    unexpected = [c for c in stored if c not in history.attempted]
    by_aggregate: dict[str, list[RecordedEvent]] = defaultdict(list)
    for copies in stored.values():
        for recorded in copies:
            by_aggregate[str(recorded.aggregate)].append(recorded)
    reordered = []
    for aggregate, attempted in history.order.items():
        rank = {command_id: index for index, command_id in enumerate(attempted)}
        landed = sorted(by_aggregate.get(aggregate, []), key=lambda r: r.sequence)
        ranks = [rank.get(recorded.command_id, -1) for recorded in landed]
        if ranks != sorted(ranks):
            reordered.append(aggregate)
    raised_stored = sum(1 for c in history.raised if c in stored)
    return Verdict(
        stored=stored,
        lost=lost,
        duplicated=duplicated,
        unexpected=unexpected,
        misreported=misreported,
        reordered=reordered,
        raised_stored=raised_stored,
        raised_absent=len(history.raised) - raised_stored,
    )


async def test_sigkill_of_the_broker_under_load_loses_and_duplicates_nothing(
    broker: EmbeddedNats, spy: SpyStore
) -> None:
    history = History()
    stopping, restarted = asyncio.Event(), asyncio.Event()
    writers = [
        asyncio.create_task(writer(n, spy, history, stopping, restarted))
        for n in range(WRITERS)
    ]
    try:
        await asyncio.sleep(random.uniform(1.5, 3.0))
        acked_before_kill = len(history.acked)
        await asyncio.to_thread(broker.kill)
        down = random.uniform(0.0, 0.5)
        await asyncio.sleep(down)
        await asyncio.to_thread(broker.start)
        restarted.set()
        await asyncio.sleep(2.5)
    finally:
        stopping.set()
        await asyncio.wait_for(asyncio.gather(*writers), RETRY_WINDOW + 10)

    verdict = await check(spy, history)
    ambiguous = [c for c in spy.unknown if c in history.attempted]
    print(
        f"\nA2 broker SIGKILL: kills=1 down={down:.2f}s writers={WRITERS} "
        f"attempted={len(history.attempted)} acked={len(history.acked)} "
        f"(before kill {acked_before_kill}, after restart "
        f"{history.acked_after_restart}) raised={dict(Counter(history.raised.values()))} "
        f"stored_events={sum(len(v) for v in verdict.stored.values())}\n"
        f"ambiguous appends (>= 1 unknown attempt)={len(ambiguous)} "
        f"of which acked={sum(1 for c in ambiguous if c in history.acked)} "
        f"acked-as-duplicate={sum(1 for r in history.acked.values() if r.duplicate)} "
        f"raised-but-stored={verdict.raised_stored} "
        f"raised-and-absent={verdict.raised_absent}"
    )
    assert acked_before_kill > 0
    assert history.acked_after_restart > 0, "no append succeeded after the restart"
    assert verdict.lost == [], "acknowledged appends missing from the stream"
    assert verdict.duplicated == [], "commands stored more than once"
    assert verdict.unexpected == [], "stored commands nobody attempted"
    assert verdict.misreported == [], "acks naming sequences other than the stored"
    assert verdict.reordered == [], "an aggregate's commands stored out of order"
    assert set(history.raised.values()) <= {EventStoreTimeout.__name__}


async def pause(broker: EmbeddedNats, seconds: float) -> None:
    """SIGSTOP the server long enough for publishes to time out, then SIGCONT it."""
    assert broker.process is not None
    os.kill(broker.process.pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(seconds)
    finally:
        os.kill(broker.process.pid, signal.SIGCONT)


@pytest.mark.parametrize("events", [1, 3], ids=["single", "atomic-batch"])
async def test_append_whose_first_attempt_timed_out_is_stored_exactly_once(
    broker: EmbeddedNats, spy: SpyStore, events: int
) -> None:
    """The paused server still holds the first publish and stores it on resume.

    The retries carry the same ``Nats-Msg-Id``, so whichever attempt the server
    sees first is stored and the others are dropped as duplicates.
    """
    aggregate = tenant()
    created = await spy.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )
    context = CommandContext()
    batch = [TenantRenamed(name=f"B{i}") for i in range(events)]

    appending = asyncio.create_task(
        spy.append(aggregate, batch, expected_version=created.version, context=context)
    )
    await pause(broker, APPEND_TIMEOUT * 2.5)
    result = await asyncio.wait_for(appending, RETRY_WINDOW)

    stored = [
        e for e in await spy.load(aggregate) if e.command_id == context.command_id
    ]
    print(f"\nunknown attempts before the ack: {spy.unknown[context.command_id]}")
    assert spy.unknown[context.command_id] >= 1
    assert [e.event for e in stored] == batch
    assert (result.first_sequence, result.last_sequence) == (
        stored[0].sequence,
        stored[-1].sequence,
    )


async def test_append_during_a_broker_restart_is_stored_exactly_once(
    broker: EmbeddedNats, spy: SpyStore
) -> None:
    """SIGKILL, then an append while the server is down, then a restart on the
    same port and directory: the append completes once the server is back."""
    aggregate = tenant()
    created = await spy.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )
    await asyncio.to_thread(broker.kill)
    context = CommandContext()
    appending = asyncio.create_task(
        spy.append(
            aggregate,
            [TenantRenamed(name="B")],
            expected_version=created.version,
            context=context,
        )
    )
    await asyncio.sleep(APPEND_TIMEOUT * 1.5)
    await asyncio.to_thread(broker.start)
    result = await asyncio.wait_for(appending, RETRY_WINDOW)

    history = await spy.load(aggregate)
    assert spy.unknown[context.command_id] >= 1
    assert [e.command_id for e in history].count(context.command_id) == 1
    assert [e.sequence for e in history] == [
        created.last_sequence,
        result.last_sequence,
    ]


def two_events() -> list[Event]:
    return [TenantCreated(name="A"), TenantRenamed(name="B")]


async def test_64_concurrent_multi_event_appends_all_commit(
    store: JetStreamEventStore,
) -> None:
    results = await asyncio.gather(
        *(
            store.append(
                tenant(), two_events(), expected_version=0, context=CommandContext()
            )
            for _ in range(64)
        ),
        return_exceptions=True,
    )

    assert [r for r in results if isinstance(r, BaseException)] == []


async def test_multi_event_appends_held_up_by_a_paused_broker_commit_when_it_resumes(
    broker: EmbeddedNats, client: NatsClient
) -> None:
    """Twenty writers, a 3 s stall: their retries pile up abandoned batches."""
    impatient = SpyStore(client, timeout=0.5, retry_window=RETRY_WINDOW)
    appends = [
        asyncio.create_task(
            impatient.append(
                tenant(), two_events(), expected_version=0, context=CommandContext()
            )
        )
        for _ in range(20)
    ]
    await pause(broker, 3.0)
    stalled = await asyncio.gather(*appends, return_exceptions=True)
    after = await asyncio.gather(
        *(
            impatient.append(
                tenant(), two_events(), expected_version=0, context=CommandContext()
            )
            for _ in range(5)
        ),
        return_exceptions=True,
    )

    assert [r for r in stalled if isinstance(r, BaseException)] == []
    assert [r for r in after if isinstance(r, BaseException)] == []
