"""The flow aggregate: a flow's revisions and whether it runs, and decisions on it."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

import msgspec

from nextra.events.base import Event
from nextra.events.flows import (
    FlowCreated,
    FlowDeleted,
    FlowRevised,
    FlowStarted,
    FlowStopped,
)
from nextra.kernel.errors import ConflictError, NotFoundError, PreconditionFailed

__all__ = (
    "KIND",
    "CreateFlow",
    "DeleteFlow",
    "FlowCommand",
    "FlowState",
    "ReviseFlow",
    "StartFlow",
    "StopFlow",
    "decide",
    "evolve",
    "fold",
)

KIND = "flow"
FlowStatus = Literal["stopped", "running"]


class FlowState(msgspec.Struct, frozen=True, kw_only=True):
    exists: bool = False
    deleted: bool = False
    name: str = ""
    description: str = ""
    revision: int = 0
    organism_yaml: str = ""
    canvas: dict[str, Any] = {}
    status: FlowStatus = "stopped"


class CreateFlow(msgspec.Struct, frozen=True, kw_only=True):
    flow_id: str
    name: str
    description: str = ""
    organism_yaml: str
    canvas: dict[str, Any] = {}


class ReviseFlow(msgspec.Struct, frozen=True, kw_only=True):
    flow_id: str
    expected_revision: int | None
    """The revision the caller edited (its ETag); ``None`` skips the check."""
    name: str
    description: str = ""
    organism_yaml: str
    canvas: dict[str, Any] = {}
    changes: list[str] = []


class StartFlow(msgspec.Struct, frozen=True, kw_only=True):
    flow_id: str


class StopFlow(msgspec.Struct, frozen=True, kw_only=True):
    flow_id: str


class DeleteFlow(msgspec.Struct, frozen=True, kw_only=True):
    flow_id: str


FlowCommand = CreateFlow | ReviseFlow | StartFlow | StopFlow | DeleteFlow


def evolve(state: FlowState, event: Event) -> FlowState:
    replace = msgspec.structs.replace
    if isinstance(event, FlowCreated):
        return FlowState(
            exists=True,
            name=event.name,
            description=event.description,
            revision=1,
            organism_yaml=event.organism_yaml,
            canvas=event.canvas,
        )
    if isinstance(event, FlowRevised):
        return replace(
            state,
            name=event.name,
            description=event.description,
            revision=event.revision,
            organism_yaml=event.organism_yaml,
            canvas=event.canvas,
        )
    if isinstance(event, FlowStarted):
        return replace(state, status="running")
    if isinstance(event, FlowStopped):
        return replace(state, status="stopped")
    if isinstance(event, FlowDeleted):
        return replace(state, deleted=True, status="stopped")
    return state


def fold(events: Iterable[Event]) -> FlowState:
    state = FlowState()
    for event in events:
        state = evolve(state, event)
    return state


def decide(state: FlowState, command: FlowCommand) -> list[Event]:
    """The events a command produces; an empty list when it changes nothing.

    Raises:
        ConflictError: Creating a flow id that exists.
        NotFoundError: The flow does not exist or was deleted.
        PreconditionFailed: A revision was edited from a stale one.
    """
    where = f"flow/{command.flow_id}"
    if isinstance(command, CreateFlow):
        if state.exists:
            message = f"flow {command.flow_id} already exists"
            raise ConflictError(message, where=where)
        return [
            FlowCreated(
                name=command.name,
                description=command.description,
                organism_yaml=command.organism_yaml,
                canvas=command.canvas,
            )
        ]

    if not state.exists or state.deleted:
        message = f"flow {command.flow_id} does not exist"
        raise NotFoundError(message, where=where)

    if isinstance(command, ReviseFlow):
        expected = command.expected_revision
        if expected is not None and expected != state.revision:
            message = (
                f"flow {command.flow_id} was edited from revision {expected}, but "
                f"revision {state.revision} is current; reload it and edit again"
            )
            raise PreconditionFailed(
                message, expected=expected, got=state.revision, where=where
            )
        unchanged = (
            command.name == state.name
            and command.description == state.description
            and command.organism_yaml == state.organism_yaml
            and command.canvas == state.canvas
        )
        if unchanged:
            return []
        return [
            FlowRevised(
                revision=state.revision + 1,
                name=command.name,
                description=command.description,
                organism_yaml=command.organism_yaml,
                canvas=command.canvas,
                changes=command.changes,
            )
        ]
    if isinstance(command, StartFlow):
        return [] if state.status == "running" else [FlowStarted()]
    if isinstance(command, StopFlow):
        return [] if state.status == "stopped" else [FlowStopped()]
    return [FlowDeleted()]
