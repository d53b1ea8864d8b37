"""The event store: appending and reading events on NATS JetStream."""

from nextra.eventstore.base import AppendResult, EventStore, Write
from nextra.eventstore.jetstream import JetStreamEventStore

__all__ = ("AppendResult", "EventStore", "JetStreamEventStore", "Write")
