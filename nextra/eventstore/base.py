"""The event store port: what the application and read models ask of a store."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol

import msgspec

from nextra.events.base import Event
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent

__all__ = ("AppendResult", "EventStore", "Write")


class AppendResult(msgspec.Struct, frozen=True, kw_only=True):
    """Where an append landed.

    Attributes:
        first_sequence: Stream sequence of the first event written.
        last_sequence: Stream sequence of the last one; the aggregate's new version,
            and the position a query can wait for to read its own write.
        duplicate: The command had been stored before; the sequences are those of
            the original append and nothing new was written.
    """

    first_sequence: int
    last_sequence: int
    duplicate: bool = False

    @property
    def version(self) -> int:
        return self.last_sequence


class Write(msgspec.Struct, frozen=True):
    """Events for one aggregate within an atomic append.

    Attributes:
        expected_version: As for :meth:`EventStore.append`.
    """

    aggregate: AggregateRef
    events: Sequence[Event]
    expected_version: int | None


class EventStore(Protocol):
    """Append-only storage of events, one ordered history per aggregate.

    An aggregate's *version* is the stream sequence of its last event (0 while it
    has none). Writers pass the version they loaded as ``expected_version``.
    """

    async def append(
        self,
        aggregate: AggregateRef,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        context: CommandContext,
    ) -> AppendResult:
        """Append events to one aggregate, all or nothing.

        Args:
            aggregate: The aggregate the events belong to.
            events: One or more events, stored in order and atomically.
            expected_version: The version the decision was based on; ``0`` means
                the aggregate must not exist yet; ``None`` skips the check.
            context: The command behind the events. Its ``command_id`` makes the
                append idempotent: repeating it returns the original result.

        Raises:
            ConcurrencyError: The aggregate moved past ``expected_version``.
            EventStoreTimeout: No answer within the retry window; the outcome is
                unknown, and repeating the call with the same command id is safe.
            EventStoreUnavailable: The store cannot be reached.
        """
        ...

    async def append_atomic(
        self, writes: Sequence[Write], *, context: CommandContext
    ) -> list[AppendResult]:
        """Append to several aggregates in one commit: all are stored, or none.

        Raises:
            ConcurrencyError: One aggregate moved past its expected version.
        """
        ...

    async def load(self, aggregate: AggregateRef) -> list[RecordedEvent]:
        """Every event of one aggregate, oldest first, upcast to current shapes."""
        ...

    def read(
        self, *, after: int = 0, subject: str = ...
    ) -> AsyncIterator[RecordedEvent]:
        """Events after stream sequence ``after``, up to the newest one.

        Args:
            after: Start after this sequence (0 reads from the beginning).
            subject: A subject filter (wildcards allowed); all events by default.
        """
        ...

    async def last_sequence(self, subject: str = ...) -> int:
        """The sequence of the newest event matching ``subject`` (0 when none)."""
        ...
