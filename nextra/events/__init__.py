"""The event contract: what Nextra records, under which names and versions.

Public names are re-exported here; anything else in the package is internal.
"""

from nextra.events.base import Event
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent
from nextra.events.registry import EventRegistry, Upcaster

__all__ = (
    "REGISTRY",
    "AggregateRef",
    "CommandContext",
    "Event",
    "EventRegistry",
    "RecordedEvent",
    "Upcaster",
)
