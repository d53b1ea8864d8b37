"""Creating, revising, starting, stopping and deleting flows."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import msgspec

from nextra.domain import tenants
from nextra.domain.flows import decider as flows
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent
from nextra.events.tenants import FlowRegistered
from nextra.eventstore.base import AppendResult, EventStore, Write
from nextra.kernel.errors import ConcurrencyError, ValidationError
from nextra.kernel.ids import new_id

__all__ = ("FlowCommands", "FlowInvalid", "FlowSaved", "Report")

# Creates and deletes contend on the tenant aggregate; under a burst each round
# lets one through, so allow many rounds, spread out by a little jitter.
_ATTEMPTS = 50


class Report(Protocol):
    """What a validator says about an organism.yaml."""

    @property
    def errors(self) -> Sequence[Any]: ...

    @property
    def warnings(self) -> Sequence[Any]: ...


class FlowInvalid(ValidationError):
    """The flow's YAML has errors; ``issues`` lists each with where it is."""

    code = "invalid-flow"

    def __init__(self, issues: Sequence[Any]) -> None:
        count = len(issues)
        message = f"the flow has {count} error{'s' if count != 1 else ''}"
        super().__init__(message, where="organism_yaml")
        self.issues = list(issues)


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
    warnings: list[Any] = []


class FlowCommands:
    """The write side of flows.

    Args:
        store: The event store.
        validate: The organism.yaml validator the deployment uses (its handler
            policy decides, for example, whether Python handlers are allowed).
    """

    def __init__(self, store: EventStore, validate: Callable[[str], Report]) -> None:
        self._store = store
        self._validate = validate

    async def create(
        self,
        tenant_id: str,
        *,
        name: str,
        organism_yaml: str,
        description: str = "",
        canvas: dict[str, Any] | None = None,
        context: CommandContext,
    ) -> FlowSaved:
        """Create a flow, counted against the tenant's tier in the same commit.

        Raises:
            FlowInvalid: The YAML has errors.
            LimitExceeded: The tenant's tier allows no more flows.
            NotFoundError: The tenant does not exist.
        """
        report = self._checked(organism_yaml)
        tenant = AggregateRef(tenant_id, tenants.KIND, tenant_id)
        flow_id = new_id()
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)

        for attempt in range(1, _ATTEMPTS + 1):
            history = await self._store.load(tenant)
            earlier = _registered_by(history, context.command_id)
            if earlier is not None:
                # A retry of a create that was stored: answer as the first time.
                return await self._describe(tenant_id, earlier, report)
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
                    organism_yaml=organism_yaml,
                    canvas=canvas or {},
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
            return FlowSaved(
                flow_id=flow_id,
                revision=1,
                result=created,
                warnings=list(report.warnings),
            )
        msg = "unreachable"
        raise AssertionError(msg)

    async def revise(
        self,
        tenant_id: str,
        flow_id: str,
        *,
        expected_revision: int | None,
        name: str,
        organism_yaml: str,
        description: str = "",
        canvas: dict[str, Any] | None = None,
        changes: Sequence[str] = (),
        context: CommandContext,
    ) -> FlowSaved:
        """Save a new revision, refusing one edited from a stale revision.

        Raises:
            FlowInvalid: The YAML has errors.
            PreconditionFailed: ``expected_revision`` is not the current one.
            NotFoundError: The flow does not exist (for this tenant).
        """
        report = self._checked(organism_yaml)
        command = flows.ReviseFlow(
            flow_id=flow_id,
            expected_revision=expected_revision,
            name=name,
            description=description,
            organism_yaml=organism_yaml,
            canvas=canvas or {},
            changes=list(changes),
        )
        return await self._handle(tenant_id, flow_id, command, context, report)

    async def start(
        self, tenant_id: str, flow_id: str, *, context: CommandContext
    ) -> FlowSaved:
        command = flows.StartFlow(flow_id=flow_id)
        return await self._handle(tenant_id, flow_id, command, context, None)

    async def stop(
        self, tenant_id: str, flow_id: str, *, context: CommandContext
    ) -> FlowSaved:
        command = flows.StopFlow(flow_id=flow_id)
        return await self._handle(tenant_id, flow_id, command, context, None)

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
                return FlowSaved(flow_id=flow_id, revision=state.revision, result=None)
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
            return FlowSaved(
                flow_id=flow_id, revision=state.revision, result=results[0]
            )
        msg = "unreachable"
        raise AssertionError(msg)

    def _checked(self, organism_yaml: str) -> Report:
        report = self._validate(organism_yaml)
        if report.errors:
            raise FlowInvalid(report.errors)
        return report

    async def _handle(
        self,
        tenant_id: str,
        flow_id: str,
        command: flows.FlowCommand,
        context: CommandContext,
        report: Report | None,
    ) -> FlowSaved:
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)
        warnings = list(report.warnings) if report is not None else []
        history = await self._store.load(flow)
        state = flows.fold(recorded.event for recorded in history)
        if any(recorded.command_id == context.command_id for recorded in history):
            return FlowSaved(flow_id=flow_id, revision=state.revision, result=None)

        events = flows.decide(state, command)
        if not events:
            return FlowSaved(
                flow_id=flow_id, revision=state.revision, result=None, warnings=warnings
            )

        # No retry on a conflict here: the decision depends on the revision the
        # caller saw, so a concurrent change is theirs to look at.
        result = await self._store.append(
            flow, events, expected_version=history[-1].sequence, context=context
        )
        revised = flows.fold(recorded.event for recorded in history)
        for event in events:
            revised = flows.evolve(revised, event)
        return FlowSaved(
            flow_id=flow_id, revision=revised.revision, result=result, warnings=warnings
        )

    async def _describe(
        self, tenant_id: str, flow_id: str, report: Report
    ) -> FlowSaved:
        flow = AggregateRef(tenant_id, flows.KIND, flow_id)
        history = await self._store.load(flow)
        created = AppendResult(
            first_sequence=history[0].sequence,
            last_sequence=history[0].sequence,
            duplicate=True,
        )
        return FlowSaved(
            flow_id=flow_id, revision=1, result=created, warnings=list(report.warnings)
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
