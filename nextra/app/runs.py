"""The write side of runs: trigger, record steps, end, cancel, expire."""

from __future__ import annotations

import contextlib
import hashlib
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import msgspec

from nextra.app.organisms import Organisms
from nextra.domain.runs import decider
from nextra.domain.runs.state import RunState
from nextra.domain.tiers import limits_for
from nextra.events.base import Event
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.runs import RunTriggered, Trigger
from nextra.events.tenants import Tier
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import aggregate_subject, run_aggregate, runs_subject
from nextra.kernel.errors import (
    ConcurrencyError,
    ConflictError,
    EventStoreError,
    NotFoundError,
    ValidationError,
)
from nextra.kernel.ids import new_id
from nextra.kernel.logging import get_logger

__all__ = ("RunCommands", "RunJournal", "Triggered", "new_run_id")

log = get_logger(__name__)

Clock = Callable[[], datetime]


def _now() -> datetime:
    return datetime.now(UTC)


class Triggered(msgspec.Struct, frozen=True, kw_only=True):
    """A stored trigger: the run it started and where its first event landed."""

    run_id: str
    flow_id: str
    revision: int
    sequence: int
    duplicate: bool = False


class RunJournal:
    """Loads run states and commits run events with optimistic concurrency.

    It keeps the states it has seen, so a worker that handles one step after
    another of a run reads only the events it has not seen yet.

    Args:
        store: The runs store (``NX_RUNS``).
        size: How many run states to keep.
    """

    def __init__(self, store: JetStreamEventStore, *, size: int = 4096) -> None:
        self._store = store
        self._size = size
        self._states: OrderedDict[str, tuple[AggregateRef, RunState]] = OrderedDict()

    async def state(
        self, run: AggregateRef, *, at_least: int = 0, latest: bool = False
    ) -> RunState:
        """The run's state, at least as new as sequence ``at_least``.

        With ``latest``, a run that has not ended is always read up to its last
        event, so that a cancel or a failure stored by another process is seen
        before a handler runs; an ended run cannot change and is not read again.
        """
        cached = self._states.get(run.aggregate_id)
        if cached is not None and cached[1].version >= at_least and at_least:
            self._states.move_to_end(run.aggregate_id)
            if not latest or cached[1].finished:
                return cached[1]
        state = cached[1] if cached is not None else RunState()
        return await self.refresh(run, state)

    async def refresh(self, run: AggregateRef, state: RunState) -> RunState:
        """Apply to ``state`` the run's events it has not seen."""
        events = self._store.read(after=state.version, subject=aggregate_subject(run))
        async for recorded in events:
            state.apply(recorded.event, recorded.sequence)
        self._remember(run, state)
        return state

    async def commit(
        self, run: AggregateRef, state: RunState, event: Event, *, command_id: str
    ) -> bool:
        """Append ``event`` at the state's version and apply it.

        Returns ``False`` when the run moved on meanwhile: the state is then
        refreshed and the caller decides again against it. A command already
        stored (its first try was stored, but its answer lost) is committed:
        the state is refreshed to include it, and ``True`` returned.
        """
        context = CommandContext(
            command_id=command_id, actor="system", correlation_id=state.run_id
        )
        try:
            result = await self._store.append(
                run, [event], expected_version=state.version or 0, context=context
            )
        except ConcurrencyError:
            await self.refresh(run, state)
            return False
        if result.duplicate:
            await self.refresh(run, state)
            return True
        state.apply(event, result.last_sequence)
        self._remember(run, state)
        return True

    async def settle(self, run: AggregateRef, state: RunState) -> None:
        """Append the run's end, if its steps have decided it."""
        while True:
            ending = decider.settle(state)
            if ending is None:
                return
            if await self.commit(run, state, ending, command_id=f"{state.run_id}:end"):
                log.info(
                    "run.ended",
                    run_id=state.run_id,
                    flow_id=state.flow_id,
                    status=state.status,
                    steps=state.steps,
                )
                # Kept until the worker handles the ending, which forgets it.
                return

    def forget(self, run: AggregateRef) -> None:
        self._states.pop(run.aggregate_id, None)

    def _remember(self, run: AggregateRef, state: RunState) -> None:
        self._states[run.aggregate_id] = (run, state)
        self._states.move_to_end(run.aggregate_id)
        while len(self._states) > self._size:
            self._states.popitem(last=False)


class RunCommands:
    """What the API and the watchdog do to runs.

    Args:
        store: The runs store.
        organisms: Reads flows and their pinned revisions.
        on_triggered: Called after a trigger is stored (the worker wake-up).
        prepare: Called before a flow's first trigger in this process, with the
            flow and its concurrency limit (makes sure its work queue exists).
    """

    def __init__(
        self,
        store: JetStreamEventStore,
        organisms: Organisms,
        *,
        prepare: Callable[[str, str, int], Any] | None = None,
        on_triggered: Callable[[str, str, Tier], Any] | None = None,
        clock: Clock = _now,
    ) -> None:
        self._store = store
        self.organisms = organisms
        self._prepare = prepare
        self._on_triggered = on_triggered
        self._clock = clock
        self.journal = RunJournal(store)

    async def trigger(
        self,
        tenant_id: str,
        flow_id: str,
        *,
        tier: Tier,
        source: str,
        payload_type: str | None,
        payload: dict[str, Any] | str,
        idempotency_key: str | None = None,
        run_id: str | None = None,
    ) -> Triggered:
        """Store a manual trigger: a new run of the flow's current revision.

        ``payload`` is typed JSON for ``payload_type`` (the entry listener's
        type when ``None``), or text, which is wrapped as a ``TextInput`` from
        ``source``. A trigger sent again with its idempotency key answers with
        the run the key started, whatever the flow has become since.

        Raises:
            NotFoundError: The flow does not exist for this tenant.
            ConflictError: The flow is stopped.
            ValidationError: The payload does not fit the entry listener, or
                the idempotency key already started a run with another payload.
            PayloadTooLarge: The payload is over the tier's limit.
        """
        run_id = run_id or new_run_id(tenant_id, flow_id, idempotency_key)
        run = run_aggregate(tenant_id, flow_id, run_id)
        if idempotency_key is not None:
            replayed = await self._replayed(run, idempotency_key, payload_type, payload)
            if replayed is not None:
                return replayed

        flow = await self.organisms.flow(tenant_id, flow_id)
        if flow.status != "running":
            message = f"flow {flow_id} is stopped; start it to let triggers through"
            raise ConflictError(
                message, expected="running", got=flow.status, where=f"flow/{flow_id}"
            )
        organism = self.organisms.parsed(tenant_id, flow_id, flow)
        limits = limits_for(tier)

        asked = (payload_type, payload)
        if isinstance(payload, str):
            payload_type = "TextInput"
            payload = {"text": payload, "source": source, "user": source}
        elif payload_type is None:
            payload_type = decider.entry_type(organism, flow_id)
        started = decider.start(
            run_id=run_id,
            flow_id=flow_id,
            revision=flow.revision,
            organism=organism,
            tier=tier,
            limits=decider.limits_of(limits),
            trigger=Trigger(kind="manual", source=source),
            payload_type=payload_type,
            payload=payload,
            now=self._clock(),
        )

        if self._prepare is not None:
            in_flight = min(
                organism.max_concurrent_handlers, limits.max_concurrent_steps_per_flow
            )
            await self._prepare(tenant_id, flow_id, in_flight)
        context = CommandContext(
            command_id=f"trigger:{run_id}", actor=source, correlation_id=run_id
        )
        result = await self._store.append(
            run, [started], expected_version=0, context=context
        )
        if result.duplicate and idempotency_key is not None:
            # The same key, sent at the same time, was stored first.
            replayed = await self._replayed(run, idempotency_key, *asked)
            if replayed is not None:
                return replayed
        if self._on_triggered is not None:
            await self._on_triggered(tenant_id, flow_id, tier)
        log.info(
            "run.triggered",
            tenant_id=tenant_id,
            flow_id=flow_id,
            run_id=run_id,
            revision=flow.revision,
            duplicate=result.duplicate,
        )
        return Triggered(
            run_id=run_id,
            flow_id=flow_id,
            revision=flow.revision,
            sequence=result.last_sequence,
            duplicate=result.duplicate,
        )

    async def _replayed(
        self,
        run: AggregateRef,
        idempotency_key: str,
        payload_type: str | None,
        payload: dict[str, Any] | str,
    ) -> Triggered | None:
        """The run the key already started, or ``None`` if it started none.

        Raises:
            ValidationError: The key started a run with another payload.
        """
        events = self._store.read(subject=aggregate_subject(run))
        async with contextlib.aclosing(events):
            recorded = await anext(events, None)
        if recorded is None:
            return None
        earlier = recorded.event
        if not isinstance(earlier, RunTriggered):
            message = f"run {run.aggregate_id} does not begin with its trigger"
            raise EventStoreError(message, where=aggregate_subject(run))

        pinned = await self.organisms.at(
            run.tenant_id, earlier.flow_id, earlier.revision
        )
        if not decider.same_trigger(earlier, pinned, payload_type, payload):
            message = (
                f"idempotency key {idempotency_key!r} already started run "
                f"{earlier.run_id} with another payload; use a new key for a new run"
            )
            raise ValidationError(
                message,
                expected=f"the payload of run {earlier.run_id}",
                got="another payload",
                where="Idempotency-Key",
            )
        return Triggered(
            run_id=earlier.run_id,
            flow_id=earlier.flow_id,
            revision=earlier.revision,
            sequence=recorded.sequence,
            duplicate=True,
        )

    async def locate(self, tenant_id: str, run_id: str) -> AggregateRef:
        """The aggregate of one of the tenant's runs, found by its id alone.

        Raises:
            NotFoundError: The tenant has no such run.
        """
        events = self._store.read(subject=runs_subject(tenant_id, "*", run_id))
        async with contextlib.aclosing(events):
            async for recorded in events:
                return recorded.aggregate
        message = f"run {run_id} does not exist"
        raise NotFoundError(message, where=f"run/{run_id}")

    async def cancel(
        self, tenant_id: str, run_id: str, *, actor: str, reason: str = ""
    ) -> RunState:
        """Stop a run; steps it still owed are not run.

        Raises:
            NotFoundError: The tenant has no such run.
            ConflictError: The run has already ended.
        """
        run = await self.locate(tenant_id, run_id)
        state = await self.journal.state(run)
        while True:
            event = decider.cancel(state, reason or f"cancelled by {actor}")
            context_id = f"{run_id}:cancel"
            if await self.journal.commit(run, state, event, command_id=context_id):
                log.info("run.cancelled", tenant_id=tenant_id, run_id=run_id)
                return state

    async def expire(self, run: AggregateRef) -> bool:
        """Fail the run if it is open past its deadline (the watchdog's command)."""
        state = await self.journal.state(run)
        while True:
            event = decider.expire(state, self._clock())
            if event is None:
                return False
            command_id = f"{run.aggregate_id}:deadline"
            if await self.journal.commit(run, state, event, command_id=command_id):
                log.warning(
                    "run.deadline_passed",
                    tenant_id=run.tenant_id,
                    run_id=run.aggregate_id,
                )
                return True


def new_run_id(tenant_id: str, flow_id: str, idempotency_key: str | None = None) -> str:
    """A fresh run id, or the one an idempotency key always gives for the flow."""
    if idempotency_key is None:
        return new_id()
    # The same key gives the same run, so a retried trigger starts nothing new.
    # The flow is part of it: a key reused on another flow is another run.
    digest = hashlib.blake2b(
        f"{tenant_id}\x00{flow_id}\x00{idempotency_key}".encode(), digest_size=13
    ).hexdigest()
    return f"r{digest}"
