"""Events of the flow aggregate: its definition, revisions and whether it runs."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from nextra.events.base import Event

__all__ = ("FlowCreated", "FlowDeleted", "FlowRevised", "FlowStarted", "FlowStopped")

FlowName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]


class FlowCreated(Event, frozen=True, kw_only=True):
    """A flow was created: revision 1 of its definition.

    ``organism_yaml`` is the definition; ``canvas`` holds what only the canvas
    knows (positions, viewport, per-node UI state), keyed by listener name.
    """

    type_name: ClassVar[str] = "flow.created"

    name: FlowName
    description: str = ""
    organism_yaml: str
    canvas: dict[str, Any] = {}


class FlowRevised(Event, frozen=True, kw_only=True):
    """A new revision of the flow's definition was saved.

    ``changes`` summarises what differs from the previous revision, in words
    (``listener greeter changed: handler``), for the revision history.
    """

    type_name: ClassVar[str] = "flow.revised"

    revision: int
    name: FlowName
    description: str = ""
    organism_yaml: str
    canvas: dict[str, Any] = {}
    changes: list[str] = []


class FlowStarted(Event, frozen=True, kw_only=True):
    """The flow was set running: its triggers are let through."""

    type_name: ClassVar[str] = "flow.started"


class FlowStopped(Event, frozen=True, kw_only=True):
    """The flow was stopped: its triggers are refused."""

    type_name: ClassVar[str] = "flow.stopped"


class FlowDeleted(Event, frozen=True, kw_only=True):
    """The flow was deleted; its history stays in the stream."""

    type_name: ClassVar[str] = "flow.deleted"
