"""What travels with an event: its aggregate, the command behind it, where it landed."""

from __future__ import annotations

from datetime import datetime

import msgspec

from nextra.events.base import Event
from nextra.kernel.errors import ValidationError
from nextra.kernel.ids import is_token, new_id

__all__ = ("AggregateRef", "CommandContext", "RecordedEvent")


class AggregateRef(msgspec.Struct, frozen=True):
    """One aggregate: a consistency boundary whose events are appended in order.

    Args:
        tenant_id: The owning tenant.
        kind: The aggregate type, such as ``tenant`` or ``flow``.
        aggregate_id: The aggregate's id within its tenant and kind.
    """

    tenant_id: str
    kind: str
    aggregate_id: str
    partition: str | None = None
    """A grouping inside the tenant that the aggregate's subject carries, so
    consumers can filter on it: a run's flow."""

    def __post_init__(self) -> None:
        for field in ("tenant_id", "kind", "aggregate_id", "partition"):
            value = getattr(self, field)
            if value is None and field == "partition":
                continue
            if not is_token(value):
                message = (
                    f"aggregate {field} must be 1-64 letters, digits, '-' or '_', "
                    f"got {value!r}"
                )
                raise ValidationError(
                    message, expected="[A-Za-z0-9_-]{1,64}", got=value, where=field
                )

    def __str__(self) -> str:
        if self.partition is not None:
            return f"{self.tenant_id}/{self.partition}/{self.kind}/{self.aggregate_id}"
        return f"{self.tenant_id}/{self.kind}/{self.aggregate_id}"


class CommandContext(msgspec.Struct, frozen=True, kw_only=True):
    """Who asked for a change and why, carried on every event it produces.

    Args:
        command_id: Unique per command; a retry reuses it so the store can drop
            the duplicate.
        actor: Who issued the command (a user, an API key, ``system``).
        correlation_id: Shared by everything one request set in motion.
        causation_id: The event or command that directly caused this one.
        traceparent: W3C trace context, so one trace follows the command.
    """

    command_id: str = msgspec.field(default_factory=new_id)
    actor: str = "system"
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


class RecordedEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as the store holds it: decoded, upcast, and positioned.

    ``sequence`` is the event's position in its stream and, for the last event of
    an aggregate, that aggregate's version.
    """

    event: Event
    event_type: str
    schema_version: int
    """The version the event was written with (before upcasting)."""
    event_id: str
    aggregate: AggregateRef
    sequence: int
    recorded_at: datetime
    actor: str
    command_id: str
    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None
