"""Creating, revising, starting, stopping and deleting flows.

A flow is written as organism.yaml, as canvas state, or both; the other form is
derived here, validated once, and both are stored with every revision.
"""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Callable, Sequence
from typing import Any, cast

import msgspec

from nextra.domain import tenants
from nextra.domain.flows import decider as flows
from nextra.domain.flows.canvas import (
    Canvas,
    CanvasError,
    canvas_to_yaml_document,
    render_yaml,
    yaml_document_to_canvas,
)
from nextra.domain.flows.changes import describe_changes
from nextra.domain.flows.model import Issue, ValidationReport
from nextra.domain.flows.validate import FlowInvalid
from nextra.domain.flows.yamlsafe import parse_yaml
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent
from nextra.events.tenants import FlowRegistered
from nextra.eventstore.base import AppendResult, EventStore, Write
from nextra.kernel.errors import ConcurrencyError, NotFoundError, ValidationError
from nextra.kernel.ids import new_id

__all__ = ("FlowCommands", "FlowSaved", "Validator")

Validator = Callable[[str], ValidationReport]
"""The deployment's organism.yaml validator (its handler policy bound)."""

# Creates and deletes contend on the tenant aggregate; under a burst each round
# lets one through, so allow many rounds, spread out by a little jitter.
_ATTEMPTS = 50


class FlowSaved(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of a command on a flow.

    Attributes:
        result: Where the events landed (``None`` when nothing changed); its
            ``last_sequence`` is what a query waits for to read the write.
        warnings: The validator's warnings, which never block a save.
    """

    flow_id: str
    revision: int
    result: AppendResult | None
    organism_yaml: str = ""
    canvas: dict[str, Any] = {}
    warnings: list[Issue] = []


class _Definition(msgspec.Struct, frozen=True):
    organism_yaml: str
    canvas: dict[str, Any]
    document: dict[str, Any]
    report: ValidationReport


class FlowCommands:
    """The write side of flows.

    Args:
        store: The event store.
        validate: The organism.yaml validator the deployment uses (its handler
            policy decides, for example, whether Python handlers are allowed).
    """

    def __init__(self, store: EventStore, validate: Validator) -> None:
        self._store = store
        self._validate = validate

    async def current(self, tenant_id: str, flow_id: str) -> flows.FlowState:
        """The flow as its events say now.

        Raises:
            NotFoundError: The flow does not exist for this tenant, or was deleted.
        """
        history = await self._store.load(AggregateRef(tenant_id, flows.KIND, flow_id))
        state = flows.fold(recorded.event for recorded in history)
        if not state.exists or state.deleted:
            message = f"flow {flow_id} does not exist"
            raise NotFoundError(message, where=f"flow/{flow_id}")
        return state

    async def create(
        self,
        tenant_id: str,
        *,
        name: str,
        organism_yaml: str | None = None,
        canvas: dict[str, Any] | None = None,
        description: str = "",
        context: CommandContext,
    ) -> FlowSaved:
        """Create a flow, counted against the tenant's tier in the same commit.

        Raises:
            FlowInvalid: The YAML (given or derived from the canvas) has errors.
            LimitExceeded: The tenant's tier allows no more flows.
            NotFoundError: The tenant does not exist.
        """
        definition = self._define(name, organism_yaml, canvas, previous=None)
        tenant = AggregateRef(tenant_id, tenants.KIND, tenant_id)
        flow_id = new_id()
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)

        for attempt in range(1, _ATTEMPTS + 1):
            history = await self._store.load(tenant)
            earlier = _registered_by(history, context.command_id)
            if earlier is not None:
                # A retry of a create that was stored: answer as the first time.
                return await self._retold(tenant_id, earlier, definition)
            state = tenants.fold(recorded.event for recorded in history)
            version = history[-1].sequence if history else 0

            registration = tenants.decide(
                state, tenants.RegisterFlow(tenant_id=tenant_id, flow_id=flow_id)
            )
            creation = flows.decide(
                flows.FlowState(),
                flows.CreateFlow(
                    flow_id=flow_id,
                    name=name,
                    description=description,
                    organism_yaml=definition.organism_yaml,
                    canvas=definition.canvas,
                ),
            )

            try:
                _, created = await self._store.append_atomic(
                    [Write(tenant, registration, version), Write(flow, creation, 0)],
                    context=context,
                )
            except ConcurrencyError:
                # Another command changed the tenant (perhaps creating a flow):
                # count again against the newer state.
                if attempt == _ATTEMPTS:
                    raise
                await _jitter(attempt)
                continue
            return _saved(flow_id, 1, created, definition)
        raise AssertionError(_UNREACHABLE)

    async def revise(
        self,
        tenant_id: str,
        flow_id: str,
        *,
        expected_revision: int | None,
        name: str,
        organism_yaml: str | None = None,
        canvas: dict[str, Any] | None = None,
        description: str = "",
        context: CommandContext,
    ) -> FlowSaved:
        """Save a new revision, refusing one edited from a stale revision.

        With only a canvas, the YAML is derived from it and the previous YAML
        (keys the canvas does not show are kept); with only YAML, the canvas is
        redrawn keeping positions and other canvas-only state.

        Raises:
            FlowInvalid: The YAML has errors.
            PreconditionFailed: ``expected_revision`` is not the current one.
            NotFoundError: The flow does not exist (for this tenant).
        """
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)
        history = await self._store.load(flow)
        state = flows.fold(recorded.event for recorded in history)
        if any(recorded.command_id == context.command_id for recorded in history):
            return _saved_state(flow_id, state, None)
        if not state.exists or state.deleted:
            message = f"flow {flow_id} does not exist"
            raise NotFoundError(message, where=f"flow/{flow_id}")

        definition = self._define(name, organism_yaml, canvas, previous=state)
        changes = describe_changes(_document(state.organism_yaml), definition.document)
        command = flows.ReviseFlow(
            flow_id=flow_id,
            expected_revision=expected_revision,
            name=name,
            description=description,
            organism_yaml=definition.organism_yaml,
            canvas=definition.canvas,
            changes=changes,
        )
        events = flows.decide(state, command)
        if not events:
            return _saved(flow_id, state.revision, None, definition)

        # No retry on a conflict: the decision rests on the revision the caller
        # saw, so a concurrent change is theirs to look at.
        result = await self._store.append(
            flow, events, expected_version=history[-1].sequence, context=context
        )
        return _saved(flow_id, state.revision + 1, result, definition)

    async def start(
        self, tenant_id: str, flow_id: str, *, context: CommandContext
    ) -> FlowSaved:
        return await self._switch(tenant_id, flows.StartFlow(flow_id=flow_id), context)

    async def stop(
        self, tenant_id: str, flow_id: str, *, context: CommandContext
    ) -> FlowSaved:
        return await self._switch(tenant_id, flows.StopFlow(flow_id=flow_id), context)

    async def delete(
        self, tenant_id: str, flow_id: str, *, context: CommandContext
    ) -> FlowSaved:
        """Delete a flow and free its place under the tier's limit, atomically."""
        tenant = AggregateRef(tenant_id, tenants.KIND, tenant_id)
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)
        for attempt in range(1, _ATTEMPTS + 1):
            flow_history = await self._store.load(flow)
            state = flows.fold(recorded.event for recorded in flow_history)
            if any(r.command_id == context.command_id for r in flow_history):
                return _saved_state(flow_id, state, None)
            tenant_history = await self._store.load(tenant)
            tenant_state = tenants.fold(recorded.event for recorded in tenant_history)

            deletion = flows.decide(state, flows.DeleteFlow(flow_id=flow_id))
            release = tenants.decide(
                tenant_state, tenants.ReleaseFlow(tenant_id=tenant_id, flow_id=flow_id)
            )
            writes = [Write(flow, deletion, flow_history[-1].sequence)]
            if release:
                writes.append(Write(tenant, release, tenant_history[-1].sequence))

            try:
                results = await self._store.append_atomic(writes, context=context)
            except ConcurrencyError:
                if attempt == _ATTEMPTS:
                    raise
                await _jitter(attempt)
                continue
            return _saved_state(flow_id, state, results[0])
        raise AssertionError(_UNREACHABLE)

    def _define(
        self,
        name: str,
        organism_yaml: str | None,
        canvas: dict[str, Any] | None,
        *,
        previous: flows.FlowState | None,
    ) -> _Definition:
        drawn = _canvas(canvas) if canvas is not None else None
        if organism_yaml is None:
            if drawn is None:
                message = "a flow needs organism_yaml, canvas, or both"
                raise ValidationError(message, expected="organism_yaml or canvas")
            organism_yaml = _yaml_from(drawn, name, previous)

        report = self._validate(organism_yaml)
        if report.errors:
            raise FlowInvalid(report)
        document = _document(organism_yaml)
        if drawn is None and previous is not None and previous.canvas:
            drawn = _canvas(previous.canvas)
        try:
            redrawn = yaml_document_to_canvas(document, previous=drawn)
        except CanvasError:
            if canvas is not None:
                raise
            # Valid YAML the canvas cannot draw (duplicate listener names, which
            # xml-pipeline allows) is kept as YAML only, with no canvas.
            return _Definition(organism_yaml, {}, document, report)
        # Stored as JSON: compare and keep it in JSON's own shapes (lists, not
        # tuples), so an unchanged canvas compares equal after a round trip.
        canvas_data = msgspec.json.decode(msgspec.json.encode(redrawn))
        return _Definition(organism_yaml, canvas_data, document, report)

    async def _switch(
        self, tenant_id: str, command: flows.FlowCommand, context: CommandContext
    ) -> FlowSaved:
        flow = AggregateRef(tenant_id, flows.KIND, command.flow_id)
        history = await self._store.load(flow)
        state = flows.fold(recorded.event for recorded in history)
        if any(recorded.command_id == context.command_id for recorded in history):
            return _saved_state(command.flow_id, state, None)

        events = flows.decide(state, command)
        if not events:
            return _saved_state(command.flow_id, state, None)

        result = await self._store.append(
            flow, events, expected_version=history[-1].sequence, context=context
        )
        for event in events:
            state = flows.evolve(state, event)
        return _saved_state(command.flow_id, state, result)

    async def _retold(
        self, tenant_id: str, flow_id: str, definition: _Definition
    ) -> FlowSaved:
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)
        history = await self._store.load(flow)
        created = AppendResult(
            first_sequence=history[0].sequence,
            last_sequence=history[0].sequence,
            duplicate=True,
        )
        return _saved(flow_id, 1, created, definition)


_UNREACHABLE = "the loop returns or raises on its last attempt"


def _yaml_from(drawn: Canvas, name: str, previous: flows.FlowState | None) -> str:
    # Keys the canvas does not show (payloads, llm, ...) come from the previous
    # revision; a new flow gets an organism name made from its display name.
    if previous is not None:
        before = _document(previous.organism_yaml)
        document = canvas_to_yaml_document(drawn, previous=before)
        return render_yaml(document, previous.organism_yaml)
    start = {"organism": {"name": _organism_name(name)}}
    return render_yaml(canvas_to_yaml_document(drawn, start))


def _document(organism_yaml: str) -> dict[str, Any]:
    # Only YAML that passed validation gets here: its top-level keys are strings.
    return cast("dict[str, Any]", parse_yaml(organism_yaml).data)


def _canvas(raw: dict[str, Any]) -> Canvas:
    try:
        return msgspec.convert(raw, Canvas)
    except msgspec.ValidationError as error:
        message = f"the canvas does not have the expected shape: {error}"
        raise ValidationError(message, where="canvas") from None


def _organism_name(name: str) -> str:
    # organism.name is a letter, then letters, digits, '_' or '-'.
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", name).strip("-_")
    return slug if slug[:1].isalpha() else f"flow-{slug}".rstrip("-")


def _saved(
    flow_id: str, revision: int, result: AppendResult | None, definition: _Definition
) -> FlowSaved:
    return FlowSaved(
        flow_id=flow_id,
        revision=revision,
        result=result,
        organism_yaml=definition.organism_yaml,
        canvas=definition.canvas,
        warnings=list(definition.report.warnings),
    )


def _saved_state(
    flow_id: str, state: flows.FlowState, result: AppendResult | None
) -> FlowSaved:
    return FlowSaved(
        flow_id=flow_id,
        revision=state.revision,
        result=result,
        organism_yaml=state.organism_yaml,
        canvas=state.canvas,
    )


async def _jitter(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, min(0.002 * attempt, 0.05)))  # noqa: S311


def _registered_by(history: Sequence[RecordedEvent], command_id: str) -> str | None:
    for recorded in history:
        if recorded.command_id == command_id and isinstance(
            recorded.event, FlowRegistered
        ):
            return recorded.event.flow_id
    return None
