"""Flows as runs need them: the state that admits a trigger, the pinned organism."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from nextra.domain.flows import decider as flows
from nextra.domain.flows.model import Organism
from nextra.events.envelope import AggregateRef
from nextra.events.flows import FlowCreated, FlowRevised
from nextra.eventstore.base import EventStore
from nextra.eventstore.subjects import aggregate_subject
from nextra.kernel.errors import NotFoundError

__all__ = ("Organisms",)

Loader = Callable[[str], Organism]


class Organisms:
    """Reads flows from their events and keeps parsed revisions.

    A revision never changes once saved, so parsed organisms are cached by
    ``(tenant, flow, revision)`` for as long as there is room.

    Args:
        store: The event store holding flows.
        load: Parses and validates organism.yaml under the deployment's policy.
        size: How many parsed revisions to keep.
    """

    def __init__(self, store: EventStore, load: Loader, *, size: int = 1024) -> None:
        self._store = store
        self._load = load
        self._size = size
        self._parsed: OrderedDict[tuple[str, str, int], Organism] = OrderedDict()
        self._states: dict[AggregateRef, tuple[int, flows.FlowState]] = {}

    async def flow(self, tenant_id: str, flow_id: str) -> flows.FlowState:
        """The flow as its events say now.

        Each call asks the store for the flow's last sequence, one small read,
        and folds the history again only when it moved: a flow's revisions each
        hold the whole YAML, and every trigger asks.

        Raises:
            NotFoundError: No such flow for this tenant, or it was deleted.
        """
        aggregate = AggregateRef(tenant_id, flows.KIND, flow_id)
        version = await self._store.last_sequence(aggregate_subject(aggregate))
        cached = self._states.get(aggregate)
        if cached is not None and cached[0] == version:
            state = cached[1]
        else:
            history = await self._store.load(aggregate)
            state = flows.fold(recorded.event for recorded in history)
            if history:
                if len(self._states) >= self._size:
                    self._states.clear()
                self._states[aggregate] = (history[-1].sequence, state)
        if not state.exists or state.deleted:
            message = f"flow {flow_id} does not exist"
            raise NotFoundError(message, where=f"flow/{flow_id}")
        return state

    def parsed(self, tenant_id: str, flow_id: str, state: flows.FlowState) -> Organism:
        """The organism of the flow's current revision, parsed once."""
        key = (tenant_id, flow_id, state.revision)
        organism = self._parsed.get(key)
        if organism is None:
            organism = self._remember(key, self._load(state.organism_yaml))
        return organism

    async def at(self, tenant_id: str, flow_id: str, revision: int) -> Organism:
        """The organism of one saved revision (runs are pinned to theirs).

        Raises:
            NotFoundError: The flow never had that revision.
        """
        key = (tenant_id, flow_id, revision)
        organism = self._parsed.get(key)
        if organism is not None:
            self._parsed.move_to_end(key)
            return organism

        history = await self._store.load(AggregateRef(tenant_id, flows.KIND, flow_id))
        text = None
        for recorded in history:
            event = recorded.event
            if (isinstance(event, FlowCreated) and revision == 1) or (
                isinstance(event, FlowRevised) and event.revision == revision
            ):
                text = event.organism_yaml
        if text is None:
            message = f"flow {flow_id} has no revision {revision}"
            raise NotFoundError(message, where=f"flow/{flow_id}/revisions/{revision}")
        return self._remember(key, self._load(text))

    def _remember(self, key: tuple[str, str, int], organism: Organism) -> Organism:
        self._parsed[key] = organism
        while len(self._parsed) > self._size:
            self._parsed.popitem(last=False)
        return organism
