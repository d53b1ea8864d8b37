"""The pump worker's loop: choose a flow fairly, pull its events, run their steps.

A delivered run event names the messages owed a step (``run.triggered`` its
first message, ``run.step_completed`` what the step sent on). For each, the
worker runs the listener's handler, commits the outcome as one event at the
run's version, and acknowledges the delivery only after that. A worker killed
at any point leaves the event unacknowledged; the next delivery finds the steps
already committed and runs only what is still owed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import msgspec
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from nextra.app.runs import RunCommands, RunJournal
from nextra.domain.flows.model import Organism
from nextra.domain.runs import decider
from nextra.domain.runs.routing import listeners_for
from nextra.domain.runs.state import RunState
from nextra.domain.tiers import limits_for
from nextra.events.envelope import AggregateRef
from nextra.events.runs import (
    Message,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunTriggered,
    StepCompleted,
    StepError,
)
from nextra.events.tenants import Tier
from nextra.eventstore.flowqueues import (
    WAKE_PREFIX,
    FlowQueues,
    WorkItem,
    parse_wake,
    wake_subject,
)
from nextra.kernel.errors import EventStoreTimeout, EventStoreUnavailable
from nextra.kernel.logging import get_logger
from nextra.runtime.worker.executor import StepRunner
from nextra.runtime.worker.scheduler import FairScheduler

__all__ = ("Worker", "WorkerSettings")

log = get_logger(__name__)

_T = TypeVar("_T")
Overdue = Callable[[], Awaitable[Sequence[AggregateRef]]]
Deleted = Callable[
    [Sequence[tuple[str, str]], datetime], Awaitable[Sequence[tuple[str, str]]]
]
_TIERS: frozenset[str] = frozenset({"free", "paid", "pro", "enterprise"})
# How often the event loop's lag is sampled, and what counts as lagging.
_PACE_INTERVAL = 0.05
_LAGGING = 0.005
_KEEPING_UP = 0.002
# Deliveries after which an event runs alone (see Worker._isolated).
_ISOLATE_FROM = 2
# How long a stopping worker waits for the steps it cancelled to give back.
_GIVE_BACK_SECONDS = 5.0
# A backlog scan waits ten times as long as it took, at most thirty intervals.
_SCAN_SHARE = 10
_SCAN_MOST = 30


class WorkerSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How one worker process runs.

    Attributes:
        concurrency: Run events this worker works on at once, at most.
        min_concurrency: The fewest it keeps taking while its event loop lags.
        quantum: The most events taken from one flow per turn.
        pulls: Flows pulled from at once.
        max_deliver: Deliveries of an event after which its steps are failed as
            poison whatever else happened (the server delivers no more).
        max_retries: Times a step is run again alone after its delivery was lost,
            before its run fails as poison.
        ack_wait: Seconds the server waits for an acknowledgement.
        scan_interval: Seconds between looks at every flow's backlog, which
            catches work whose wake-up was missed.
        watchdog_interval: Seconds between looks for runs past their deadline.
        outage_seconds: Seconds a worker keeps trying to read a run the store
            does not answer for, before it gives the event back.
        retire_interval: Seconds between looks for idle work consumers of
            flows deleted at least that long ago, which are then removed.
        shutdown_grace: Seconds a stopping worker lets the steps in hand
            finish; those still running then are cancelled and given back.
    """

    concurrency: int = 64
    min_concurrency: int = 4
    quantum: int = 16
    pulls: int = 4
    max_deliver: int = 5
    max_retries: int = 2
    ack_wait: float = 30.0
    scan_interval: float = 1.0
    watchdog_interval: float = 5.0
    outage_seconds: float = 10.0
    retire_interval: float = 60.0
    shutdown_grace: float = 30.0


class Worker:
    """One pump worker process's loop.

    Args:
        overdue: Lists runs still open past their deadline (the watchdog's
            query); ``None`` leaves the watchdog off.
        deleted: Says which of the given ``(tenant, flow)`` pairs are flows
            deleted before the given time; ``None`` keeps every work consumer.
    """

    def __init__(
        self,
        nc: NatsClient,
        queues: FlowQueues,
        runs: RunCommands,
        runner: StepRunner,
        settings: WorkerSettings,
        *,
        overdue: Overdue | None = None,
        deleted: Deleted | None = None,
    ) -> None:
        self._nc = nc
        self._queues = queues
        self._organisms = runs.organisms
        self._runs = runs
        self._journal: RunJournal = runs.journal
        self._runner = runner
        self._settings = settings
        self._overdue = overdue
        self._deleted = deleted
        self._scheduler = FairScheduler()
        self._woken = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._busy = 0
        self._reserved = 0
        self._limit = settings.concurrency
        self._suspects = 0
        self._isolating = False
        self._pulling: set[tuple[str, str]] = set()
        self._rewoken: set[tuple[str, str]] = set()
        self._locks: dict[str, _Held] = {}
        self._slots: dict[tuple[str, str, int], _Slots] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stopping: asyncio.Event) -> None:
        """Work until ``stopping`` is set, then finish what is in hand."""
        await self._queues.start()
        wake = await self._nc.subscribe(f"{WAKE_PREFIX}.>", cb=self._on_wake)
        background = [
            asyncio.create_task(self._scan(stopping), name="worker scan"),
            asyncio.create_task(self._pace(stopping), name="worker pace"),
        ]
        if self._overdue is not None:
            background.append(
                asyncio.create_task(self._watch(stopping), name="worker watchdog")
            )
        if self._deleted is not None:
            background.append(
                asyncio.create_task(self._retire(stopping), name="worker retire")
            )
        log.info("worker.started", concurrency=self._settings.concurrency)
        try:
            await self._loop(stopping)
        finally:
            await wake.unsubscribe()
            for task in background:
                task.cancel()
            await self._finish_in_hand()
            log.info("worker.stopped")

    async def _finish_in_hand(self) -> None:
        """Let the steps in hand finish, then give back those that did not.

        A step given back goes to another worker at once, rather than after the
        ack wait; its handler runs again there, as after a crash.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.shutdown_grace
        # Pulls still out when the worker was told to stop bring steps in
        # after that: they get the same grace, so the set is looked at again.
        while self._tasks and (left := deadline - loop.time()) > 0:
            await asyncio.wait(set(self._tasks), timeout=left)
        unfinished = list(self._tasks)
        for task in unfinished:
            task.cancel()
        if unfinished:
            log.warning("worker.steps_given_back", steps=len(unfinished))
            await asyncio.wait(unfinished, timeout=_GIVE_BACK_SECONDS)

    async def _loop(self, stopping: asyncio.Event) -> None:
        settings = self._settings
        while not stopping.is_set():
            room = self._limit - self._busy - self._reserved
            held = self._suspects > 0 or self._isolating
            if held or room <= 0 or len(self._pulling) >= settings.pulls:
                self._slot_freed.clear()
                await _first(self._slot_freed, stopping, timeout=1.0)
                continue
            pick = self._scheduler.next(exclude=self._pulling)
            if pick is None:
                self._woken.clear()
                await _first(self._woken, stopping, timeout=settings.scan_interval)
                continue

            # Pulls run beside the loop: one that waits (its flow is at its
            # in-flight limit) does not hold up the other flows.
            room = min(settings.quantum, room)
            self._reserved += room
            self._pulling.add(pick)
            self._spawn(self._pull(pick, room))

    async def _pull(self, flow: tuple[str, str], room: int) -> None:
        tenant_id, flow_id = flow
        items: list[WorkItem] = []
        try:
            items = await self._queues.pull(tenant_id, flow_id, room)
        except Exception as error:  # noqa: BLE001 - the loop must go on
            log.warning(
                "worker.pull_failed",
                tenant_id=tenant_id,
                flow_id=flow_id,
                error=str(error),
            )
            await asyncio.sleep(0.1)
        finally:
            self._reserved -= room
            self._pulling.discard(flow)
            rewoken = flow in self._rewoken
            self._rewoken.discard(flow)
            self._slot_freed.set()

        if not items:
            # Work announced while the pull was out may have missed it.
            if not rewoken:
                self._scheduler.idle(tenant_id, flow_id)
            return
        self._scheduler.served(tenant_id, flow_id, len(items))
        for item in items:
            if item.attempt > _ISOLATE_FROM:
                self._suspects += 1
                self._spawn(self._isolated(item))
            else:
                self._busy += 1
                self._spawn(self._handle(item))

    async def _isolated(self, item: WorkItem) -> None:
        """Run an event delivered a third time or more alone, with nothing else.

        An event delivered again may be what killed a worker. Run beside other
        steps, it would take them down with it each time, until they too looked
        like poison; run alone, only its own run fails as poison. The second
        delivery still runs beside others, so that one crash does not make a
        worker replay everything it had in hand one step at a time.
        """
        heartbeat = asyncio.create_task(self._keep_alive(item.msg))
        try:
            # No new pulls start while a suspect waits; those already out
            # could still bring steps in, so they are waited for too.
            while self._busy > 0 or self._isolating or self._pulling:
                self._slot_freed.clear()
                await _first(self._slot_freed, timeout=0.1)
            self._isolating = True
            self._busy += 1
        except asyncio.CancelledError:
            # Stopping before its turn came: another worker takes it.
            with contextlib.suppress(Exception):
                await item.msg.nak()
            raise
        finally:
            heartbeat.cancel()
            self._suspects -= 1
        try:
            await self._handle(item)
        finally:
            self._isolating = False
            self._slot_freed.set()

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _wake(self, tenant_id: str, flow_id: str, tier: Tier | None = None) -> None:
        self._scheduler.wake(tenant_id, flow_id, tier)
        if (tenant_id, flow_id) in self._pulling:
            self._rewoken.add((tenant_id, flow_id))
        self._woken.set()

    async def _handle(self, item: WorkItem) -> None:
        run = item.event.aggregate
        heartbeat = asyncio.create_task(self._keep_alive(item.msg))
        try:
            await self._work(item)
            await item.msg.ack()
        except asyncio.CancelledError:
            # The worker is stopping with the step unfinished: another takes it.
            with contextlib.suppress(Exception):
                await item.msg.nak()
            raise
        except Exception as error:
            log.exception(
                "worker.step_failed",
                tenant_id=run.tenant_id,
                run_id=run.aggregate_id,
                sequence=item.event.sequence,
                error=str(error),
            )
            with contextlib.suppress(Exception):
                await item.msg.nak(delay=1.0)
        finally:
            heartbeat.cancel()
            self._busy -= 1
            self._slot_freed.set()
            if run.partition is not None:
                # Its next steps, if any, are waiting on the same flow.
                self._wake(run.tenant_id, run.partition)

    async def _work(self, item: WorkItem) -> None:
        event = item.event.event
        run = item.event.aggregate
        if isinstance(event, RunTriggered):
            self._wake(run.tenant_id, run.partition or "", event.tier)
            messages: tuple[Message, ...] = (event.message,)
        elif isinstance(event, StepCompleted):
            messages = tuple(sent for sent in event.sent if sent.receivers > 0)
        elif isinstance(event, RunCompleted | RunFailed | RunCancelled):
            # The run's last event: its state gives its place in the journal
            # to runs still going (a late delivery would read it again).
            self._journal.forget(run)
            return
        else:
            return

        with self._holding(run):
            state, organism = await self._patiently(
                lambda: self._load(run, item.event.sequence, messages)
            )
            if state.finished:
                self._journal.forget(run)
                return
            if organism is not None:
                # Every branch finishes before a failure is raised: a branch
                # still running when the event goes back would run twice.
                outcomes = await asyncio.gather(
                    *(
                        self._deliver(run, state, organism, message, item.attempt)
                        for message in messages
                    ),
                    return_exceptions=True,
                )
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        raise outcome
            async with self._lock(run):
                await self._journal.settle(run, state)
            if state.status != "running":
                # Ended: its place in the journal goes to runs still going.
                self._journal.forget(run)

    async def _load(
        self, run: AggregateRef, sequence: int, messages: tuple[Message, ...]
    ) -> tuple[RunState, Organism | None]:
        """The run's state and, if it still owes ``messages``, its organism."""
        state = await self._journal.state(run, at_least=sequence, latest=bool(messages))
        if state.finished or not messages:
            return state, None
        organism = await self._organisms.at(
            run.tenant_id, state.flow_id, state.revision
        )
        return state, organism

    async def _patiently(self, read: Callable[[], Awaitable[_T]]) -> _T:
        """``read()``, tried again for a while if the store does not answer.

        A read can be repeated at no cost. Giving the event back instead would
        count a delivery against it, and a step caught by two short outages
        would end as poison although nothing was wrong with it.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._settings.outage_seconds
        delay = 0.1
        while True:
            try:
                return await read()
            except (EventStoreUnavailable, EventStoreTimeout) as error:
                if loop.time() + delay >= deadline:
                    raise
                log.warning("worker.store_unanswered", error=str(error), delay=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

    async def _deliver(
        self,
        run: AggregateRef,
        state: RunState,
        organism: Organism,
        message: Message,
        attempt: int,
    ) -> None:
        receivers = listeners_for(organism, message.to, message.payload_type)
        # Listeners sharing a name and type take the message one after the
        # other, in declaration order, as in xml-pipeline.
        for entry, listener in enumerate(receivers):
            if state.decided():
                return
            if (message.id, entry) in state.done:
                continue
            if decider.expire(state, datetime.now(UTC)) is not None:
                async with self._lock(run):
                    await self._runs.expire(run)
                return

            result: decider.StepResult | None = None
            if attempt > 1:
                # This delivery replaces one that was lost with the step in
                # hand: the retry is recorded before the step runs again.
                result = await self._retry(run, state, message, entry, attempt)
                if state.decided() or (message.id, entry) in state.done:
                    continue
            if result is not None:
                # Poison: its outcome is recorded without running it again.
                await self._record(run, state, organism, message, entry, result)
                continue
            # The place is kept until the outcome is committed: a sibling
            # waiting for it then sees whether this step decided the run.
            async with self._slot(run, state, organism):
                if state.decided():
                    return
                result = await self._runner.run(
                    organism, listener, message, state, attempt=attempt
                )
                await self._record(run, state, organism, message, entry, result)

    async def _retry(
        self,
        run: AggregateRef,
        state: RunState,
        message: Message,
        entry: int,
        attempt: int,
    ) -> decider.StepResult | None:
        """Record a retry of the step, or, if it used up its retries, poison.

        Returns the poison outcome, or ``None`` when the step should run.
        """
        settings = self._settings
        retries = state.retries.get((message.id, entry), 0)
        if retries >= settings.max_retries or attempt >= settings.max_deliver:
            detail = (
                f"the step ran {retries + 1} times and its worker died or stalled "
                f"each time (delivery {attempt})"
            )
            return decider.StepResult(
                outcome="refused",
                error=StepError(code="poison", message=detail),
                started_at=datetime.now(UTC),
                duration_ms=0.0,
                attempt=attempt,
                limit="poison",
            )
        command_id = f"{run.aggregate_id}:{message.id}:{entry}:retry:{attempt}"
        async with self._lock(run):
            while not state.finished and (message.id, entry) not in state.done:
                event = decider.retry(state, message, entry, attempt)
                if await self._journal.commit(run, state, event, command_id=command_id):
                    break
        log.warning(
            "step.retried",
            tenant_id=run.tenant_id,
            run_id=run.aggregate_id,
            message_id=message.id,
            attempt=attempt,
        )
        return None

    async def _record(
        self,
        run: AggregateRef,
        state: RunState,
        organism: Organism,
        message: Message,
        entry: int,
        result: decider.StepResult,
    ) -> None:
        command_id = f"{run.aggregate_id}:{message.id}:{entry}"
        async with self._lock(run):
            while True:
                step = decider.complete_step(state, organism, message, entry, result)
                if step is None:
                    return
                if await self._journal.commit(run, state, step, command_id=command_id):
                    break
            if state.verdict is not None:
                # Decided (its output, or a limit): ended now, not once the
                # siblings still running have finished.
                await self._journal.settle(run, state)
        log.info(
            "step.completed",
            tenant_id=run.tenant_id,
            flow_id=run.partition,
            run_id=run.aggregate_id,
            message_id=message.id,
            listener=step.listener,
            outcome=step.outcome,
            sent=len(step.sent),
            dropped=len(step.dropped),
            duration_ms=step.duration_ms,
        )
        if any(sent.receivers > 0 for sent in step.sent) and run.partition:
            self._wake(run.tenant_id, run.partition, state.tier)
            await self._nc.publish(
                wake_subject(run.tenant_id, run.partition), state.tier.encode()
            )

    @contextlib.contextmanager
    def _holding(self, run: AggregateRef) -> Iterator[None]:
        """Keep the run's lock while this worker has the run in hand.

        The lock serialises this worker's commits to one run; it is dropped as
        soon as no event of the run is in hand, so that runs other workers
        ended, or that were cancelled or expired, leave nothing behind.
        """
        held = self._locks.get(run.aggregate_id)
        if held is None:
            held = self._locks[run.aggregate_id] = _Held()
        held.users += 1
        try:
            yield
        finally:
            held.users -= 1
            if held.users == 0:
                del self._locks[run.aggregate_id]

    def _lock(self, run: AggregateRef) -> asyncio.Lock:
        return self._locks[run.aggregate_id].lock

    @contextlib.asynccontextmanager
    async def _slot(
        self, run: AggregateRef, state: RunState, organism: Organism
    ) -> AsyncIterator[None]:
        """One of the flow's places for a running handler, in this worker.

        The flow's work consumer holds its events in flight to the flow's limit
        across all workers, but one event may owe several steps (a fan-out).
        Within a worker its handlers share the same number of places, so that a
        fan-out does not run more of them at once than the flow allows.
        """
        size = min(
            organism.max_concurrent_handlers,
            limits_for(state.tier).max_concurrent_steps_per_flow,
        )
        # By size too: runs pinned to revisions (or tiers) with other limits
        # each keep to their own, rather than replacing each other's places.
        key = (run.tenant_id, state.flow_id, size)
        slots = self._slots.get(key)
        if slots is None:
            slots = self._slots[key] = _Slots(size)
        slots.users += 1
        try:
            async with slots.semaphore:
                yield
        finally:
            slots.users -= 1
            if slots.users == 0:
                del self._slots[key]

    async def _keep_alive(self, msg: Msg) -> None:
        # A long step must not be handed to another worker while it runs.
        while True:
            await asyncio.sleep(self._settings.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def _on_wake(self, msg: Msg) -> None:
        parsed = parse_wake(msg.subject)
        if parsed is None:
            return
        text = msg.data.decode(errors="replace")
        tier: Tier | None = text if text in _TIERS else None  # type: ignore[assignment]
        self._wake(*parsed, tier)

    async def _scan(self, stopping: asyncio.Event) -> None:
        """Wake every flow with a backlog, in case its wake-up was missed.

        Listing every work consumer costs the server about 50 microseconds of
        CPU per flow, so with many flows the scan waits ten times as long as it
        took (at most 30 intervals): with 10,000 flows a missed wake-up costs
        up to about 7 s, and each worker's scans keep the server busy at most a
        tenth of the time.
        """
        loop = asyncio.get_running_loop()
        floor = self._settings.scan_interval
        interval = floor
        while not stopping.is_set():
            began = loop.time()
            try:
                queues = await self._queues.backlogs()
            except Exception as error:  # noqa: BLE001 - retried next interval
                # A scan that failed says nothing of how long one takes, and
                # wake-ups are most likely lost just then: the next comes soon.
                log.warning("worker.scan_failed", error=str(error))
                interval = floor
            else:
                for queue in queues:
                    if queue.pending or queue.in_flight:
                        self._wake(queue.tenant_id, queue.flow_id)
                took = loop.time() - began
                interval = min(max(floor, _SCAN_SHARE * took), _SCAN_MOST * floor)
            await _first(stopping, timeout=interval)

    async def _retire(self, stopping: asyncio.Event) -> None:
        """Remove the work consumers of deleted flows that owe no step.

        A deleted flow takes no trigger, and its runs still open finish first:
        their events keep its consumer busy until then. Only flows deleted one
        interval ago or more are removed, which leaves a trigger that passed
        its check just before the delete the time to be stored and seen. Every
        worker may do this; removing a consumer twice is harmless.
        """
        assert self._deleted is not None
        interval = self._settings.retire_interval
        while not stopping.is_set():
            await _first(stopping, timeout=interval)
            if stopping.is_set():
                return
            try:
                queues = await self._queues.backlogs()
                idle = [
                    (queue.tenant_id, queue.flow_id)
                    for queue in queues
                    if not (queue.pending or queue.in_flight)
                ]
                before = datetime.now(UTC) - timedelta(seconds=interval)
                for tenant_id, flow_id in await self._deleted(idle, before):
                    await self._queues.remove(tenant_id, flow_id)
                    log.info(
                        "worker.queue_removed", tenant_id=tenant_id, flow_id=flow_id
                    )
            except Exception as error:  # noqa: BLE001 - retried next interval
                log.warning("worker.retire_failed", error=str(error))

    async def _pace(self, stopping: asyncio.Event) -> None:
        """Take fewer steps in hand while the event loop is behind.

        Steps in hand share one event loop. When they keep it busy, a step that
        was just pulled for another tenant waits behind all of them, however
        fairly it was chosen. So the limit falls while the loop lags and climbs
        back while it keeps up (additive increase, multiplicative decrease),
        between ``min_concurrency`` and ``concurrency``.
        """
        settings = self._settings
        loop = asyncio.get_running_loop()
        while not stopping.is_set():
            began = loop.time()
            await asyncio.sleep(_PACE_INTERVAL)
            lag = loop.time() - began - _PACE_INTERVAL
            if lag > _LAGGING:
                self._limit = max(settings.min_concurrency, int(self._limit * 0.75))
            elif lag < _KEEPING_UP and self._limit < settings.concurrency:
                self._limit += 1
                self._slot_freed.set()

    async def _watch(self, stopping: asyncio.Event) -> None:
        assert self._overdue is not None
        while not stopping.is_set():
            try:
                for run in await self._overdue():
                    with self._holding(run):
                        async with self._lock(run):
                            await self._runs.expire(run)
            except Exception as error:  # noqa: BLE001 - retried next interval
                log.warning("worker.watchdog_failed", error=str(error))
            await _first(stopping, timeout=self._settings.watchdog_interval)


class _Slots:
    """A flow's places for running handlers in this worker, and who uses them."""

    __slots__ = ("semaphore", "users")

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.users = 0


class _Held:
    """A run's lock, and how many of the run's events this worker has in hand."""

    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


async def _first(*events: asyncio.Event, timeout: float) -> None:
    """Wait until any of ``events`` is set, or ``timeout`` passes."""
    waiters = [asyncio.create_task(event.wait()) for event in events]
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when="FIRST_COMPLETED")
    finally:
        for waiter in waiters:
            waiter.cancel()
