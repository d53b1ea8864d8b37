"""The event store on NATS JetStream, through nats-py.

Contracts kept here (tests in tests/eventstore pin each one):

* One subject per aggregate; its version is the stream sequence of its last event,
  checked with ``Nats-Expected-Last-Subject-Sequence``.
* ``Nats-Msg-Id`` derives from the command id, so a retried append is dropped by the
  server inside its duplicate window; outside it (or when the stale version check
  answers first) the command id stored on each event identifies the original.
* Several events commit as one ADR-50 atomic batch: all are stored or none.
* Timeouts and lost connections are retried with the same ids until the retry
  window closes; only then does the caller see ``EventStoreTimeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from opentelemetry import propagate

from nextra.events.base import Event
from nextra.events.envelope import AggregateRef, CommandContext, RecordedEvent
from nextra.events.registry import EventRegistry
from nextra.eventstore import headers as h
from nextra.eventstore.base import AppendResult
from nextra.eventstore.subjects import (
    ALL_EVENTS,
    aggregate_subject,
    parse_aggregate_subject,
)
from nextra.kernel import metrics
from nextra.kernel.errors import (
    ConcurrencyError,
    EventStoreError,
    EventStoreTimeout,
    EventStoreUnavailable,
    ValidationError,
)
from nextra.kernel.ids import new_id

__all__ = ("DEFAULT_STREAM", "MAX_EVENTS_PER_APPEND", "JetStreamEventStore")

DEFAULT_STREAM = "NX_EVENTS"
MAX_EVENTS_PER_APPEND = 1000  # the server's atomic batch limit
_READ_BATCH = 1000

_WRONG_LAST_SEQUENCE = 10071
_BATCH_DUPLICATE = 10201
# Refused before commit, so nothing was stored: the same batch may be sent again.
_BATCH_RETRYABLE = frozenset(
    {
        10176,  # incomplete and abandoned (a message was lost, say to a reconnect)
        10210,  # too many batches in flight on the stream
    }
)
# The server holds at most 50 open batches per stream; stay below it from one
# process so multi-event appends queue here instead of being refused.
_BATCHES_IN_FLIGHT = 32


class _ApiError(msgspec.Struct):
    code: int
    err_code: int = 0
    description: str = ""


class _PubAck(msgspec.Struct):
    stream: str = ""
    seq: int = 0
    duplicate: bool = False
    count: int = 0
    error: _ApiError | None = None


class _Transient(Exception):
    """The outcome of a publish is unknown; it is safe to repeat with the same ids."""


_ack_decoder = msgspec.json.Decoder(_PubAck)


class JetStreamEventStore:
    """Events of all tenants on one JetStream stream.

    Args:
        nc: A connected nats-py client. The store does not own it.
        registry: The event types it may write and read.
        stream: The stream holding ``nx.ev.>``.
        timeout: Seconds one publish waits for its acknowledgement.
        retry_window: Seconds an append keeps retrying a publish whose outcome is
            unknown (timeout, server restarting) before giving up.
    """

    def __init__(
        self,
        nc: NatsClient,
        registry: EventRegistry,
        *,
        stream: str = DEFAULT_STREAM,
        timeout: float = 5.0,
        retry_window: float = 30.0,
    ) -> None:
        self._nc = nc
        self._registry = registry
        self._stream = stream
        self._timeout = timeout
        self._retry_window = retry_window
        self._batch_slots = asyncio.Semaphore(_BATCHES_IN_FLIGHT)

    @property
    def stream(self) -> str:
        return self._stream

    async def append(
        self,
        aggregate: AggregateRef,
        events: Sequence[Event],
        *,
        expected_version: int | None,
        context: CommandContext,
    ) -> AppendResult:
        if not events:
            message = f"append to {aggregate} needs at least one event"
            raise ValidationError(message, expected=">= 1 event", got=0)
        if len(events) > MAX_EVENTS_PER_APPEND:
            message = f"append to {aggregate} has too many events for one commit"
            raise ValidationError(
                message, expected=f"<= {MAX_EVENTS_PER_APPEND}", got=len(events)
            )

        subject = aggregate_subject(aggregate)
        messages = self._encode(aggregate, events, context)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_window
        delay = 0.05

        while True:
            try:
                if len(messages) == 1:
                    result = await self._publish_one(
                        subject, messages[0], expected_version
                    )
                else:
                    async with self._batch_slots:
                        result = await self._publish_batch(
                            subject, messages, expected_version
                        )
            except _Transient as error:
                if loop.time() + delay >= deadline:
                    message = (
                        f"append to {aggregate} got no acknowledgement within "
                        f"{self._retry_window:.0f}s; it may or may not be stored, and "
                        f"repeating command {context.command_id} is safe"
                    )
                    raise EventStoreTimeout(message, where=str(aggregate)) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except ConcurrencyError:
                original = await self._find_command(
                    aggregate, context.command_id, expected_version
                )
                if original is None:
                    raise
                return original
            if result is None:
                original = await self._find_command(aggregate, context.command_id, None)
                if original is None:
                    message = (
                        f"the store reported command {context.command_id} as a "
                        f"duplicate, but {aggregate} holds no event of it"
                    )
                    raise EventStoreError(message, where=str(aggregate))
                return original
            metrics.EVENTS_APPENDED.labels(kind=aggregate.kind).inc(len(events))
            return result

    def _encode(
        self, aggregate: AggregateRef, events: Sequence[Event], context: CommandContext
    ) -> list[tuple[bytes, dict[str, str]]]:
        traceparent = context.traceparent
        if traceparent is None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            traceparent = carrier.get(h.TRACEPARENT)

        # Ids are fixed here, once, so every retry sends the very same messages.
        single = len(events) == 1
        messages = []
        for index, event in enumerate(events):
            headers = {
                h.EVENT_TYPE: event.type_name,
                h.SCHEMA_VERSION: str(event.schema_version),
                h.EVENT_ID: new_id(),
                h.TENANT: aggregate.tenant_id,
                h.ACTOR: context.actor,
                h.COMMAND_ID: context.command_id,
                "Nats-Msg-Id": context.command_id
                if single
                else f"{context.command_id}:{index}",
            }
            if context.correlation_id:
                headers[h.CORRELATION_ID] = context.correlation_id
            if context.causation_id:
                headers[h.CAUSATION_ID] = context.causation_id
            if traceparent:
                headers[h.TRACEPARENT] = traceparent
            messages.append((self._registry.encode(event), headers))
        return messages

    async def _publish_one(
        self,
        subject: str,
        message: tuple[bytes, dict[str, str]],
        expected_version: int | None,
    ) -> AppendResult | None:
        payload, headers = message
        if expected_version is not None:
            headers = {
                **headers,
                "Nats-Expected-Last-Subject-Sequence": str(expected_version),
            }
        ack = await self._request(subject, payload, headers)
        self._raise_for(ack, subject, expected_version)
        return AppendResult(
            first_sequence=ack.seq, last_sequence=ack.seq, duplicate=ack.duplicate
        )

    async def _publish_batch(
        self,
        subject: str,
        messages: list[tuple[bytes, dict[str, str]]],
        expected_version: int | None,
    ) -> AppendResult | None:
        # ADR-50: the first message is a request (empty reply when accepted), the
        # middle ones plain publishes, the last one commits and gets the PubAck.
        # A fresh batch id per attempt: an abandoned attempt cannot be resumed.
        batch_id = new_id()
        last = len(messages)
        for number, (payload, headers) in enumerate(messages, start=1):
            batch_headers = {
                **headers,
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(number),
            }
            if number == 1 and expected_version is not None:
                batch_headers["Nats-Expected-Last-Subject-Sequence"] = str(
                    expected_version
                )
            if number == last:
                batch_headers["Nats-Batch-Commit"] = "1"
                ack = await self._request(subject, payload, batch_headers)
                if ack.error is not None and ack.error.err_code == _BATCH_DUPLICATE:
                    return None
                self._raise_for(ack, subject, expected_version)
                return AppendResult(
                    first_sequence=ack.seq - last + 1, last_sequence=ack.seq
                )
            if number == 1:
                ack = await self._request(
                    subject, payload, batch_headers, empty_ok=True
                )
                self._raise_for(ack, subject, expected_version)
            else:
                await self._nc.publish(subject, payload, headers=batch_headers)
        msg = "unreachable: the loop returns on the last message"
        raise AssertionError(msg)

    async def _request(
        self,
        subject: str,
        payload: bytes,
        headers: dict[str, str],
        *,
        empty_ok: bool = False,
    ) -> _PubAck:
        try:
            reply = await self._nc.request(
                subject, payload, timeout=self._timeout, headers=headers
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            # No responders: JetStream is restarting or the stream is missing;
            # both are retried until the window closes.
            raise _Transient(str(error)) from error
        except (
            nats.errors.ConnectionClosedError,
            nats.errors.ConnectionReconnectingError,
        ) as error:
            raise _Transient(str(error)) from error
        if not reply.data:
            if empty_ok:
                return _PubAck()
            msg = "empty acknowledgement"
            raise _Transient(msg)
        return _ack_decoder.decode(reply.data)

    def _raise_for(
        self, ack: _PubAck, subject: str, expected_version: int | None
    ) -> None:
        if ack.error is None:
            return
        error = ack.error
        if error.err_code == _WRONG_LAST_SEQUENCE:
            aggregate = parse_aggregate_subject(subject)
            actual = error.description.rsplit(":", 1)[-1].strip()
            raise ConcurrencyError(
                str(aggregate),
                expected_version if expected_version is not None else 0,
                int(actual) if actual.isdigit() else None,
            )
        if error.code == 503 or error.err_code in _BATCH_RETRYABLE:
            raise _Transient(error.description)
        message = (
            f"stream {self._stream} refused the append to {subject}: "
            f"{error.description} (error {error.err_code})"
        )
        raise EventStoreError(message, got=error.err_code, where=self._stream)

    async def _find_command(
        self, aggregate: AggregateRef, command_id: str, after: int | None
    ) -> AppendResult | None:
        sequences = [
            recorded.sequence
            async for recorded in self._read_raw(
                aggregate_subject(aggregate), after or 0
            )
            if recorded.headers.get(h.COMMAND_ID) == command_id
        ]
        if not sequences:
            return None
        return AppendResult(
            first_sequence=sequences[0], last_sequence=sequences[-1], duplicate=True
        )

    async def load(self, aggregate: AggregateRef) -> list[RecordedEvent]:
        subject = aggregate_subject(aggregate)
        return [self._decode(raw) async for raw in self._read_raw(subject, 0)]

    async def read(
        self, *, after: int = 0, subject: str = ALL_EVENTS
    ) -> AsyncIterator[RecordedEvent]:
        async for raw in self._read_raw(subject, after):
            yield self._decode(raw)

    async def last_sequence(self, subject: str = ALL_EVENTS) -> int:
        if subject == ALL_EVENTS:
            info = await self._api(f"STREAM.INFO.{self._stream}", b"")
            return int(info.get("state", {}).get("last_seq", 0))
        request = msgspec.json.encode({"last_by_subj": subject})
        reply = await self._api(f"DIRECT.GET.{self._stream}", request, raw=True)
        headers = reply.headers or {}
        return int(headers.get("Nats-Sequence", "0"))

    async def _api(self, call: str, payload: bytes, *, raw: bool = False) -> Any:
        try:
            reply = await self._nc.request(
                f"$JS.API.{call}", payload, timeout=self._timeout
            )
        except nats.errors.NoRespondersError as error:
            message = "JetStream is not enabled or not ready on the NATS server"
            raise EventStoreUnavailable(message, where=call) from error
        except nats.errors.TimeoutError as error:
            message = f"JetStream did not answer {call} within {self._timeout}s"
            raise EventStoreTimeout(message, where=call) from error
        if raw:
            return reply
        data: dict[str, Any] = msgspec.json.decode(reply.data)
        if "error" in data:
            message = f"JetStream refused {call}: {data['error'].get('description')}"
            raise EventStoreError(message, where=call)
        return data

    async def _read_raw(self, subject: str, after: int) -> AsyncIterator[_Raw]:
        """Messages on ``subject`` after sequence ``after``, via batched direct gets.

        Direct gets create no consumer and stream whole batches, which makes
        loading an aggregate of hundreds of events a handful of round trips.
        """
        start = after + 1
        while True:
            request = msgspec.json.encode(
                {"seq": start, "batch": _READ_BATCH, "next_by_subj": subject}
            )
            inbox = self._nc.new_inbox()
            sub = await self._nc.subscribe(inbox)
            try:
                await self._nc.publish(
                    f"$JS.API.DIRECT.GET.{self._stream}", request, reply=inbox
                )
                pending = 0
                received = 0
                while True:
                    try:
                        msg = await sub.next_msg(timeout=self._timeout)
                    except nats.errors.TimeoutError as error:
                        message = f"reading {subject} from {self._stream} timed out"
                        raise EventStoreTimeout(message, where=subject) from error
                    headers = msg.headers or {}
                    status = headers.get("Status")
                    if status == "404":
                        return
                    if status == "204":
                        pending = int(headers.get("Nats-Num-Pending", "0"))
                        break
                    if status is not None:
                        message = (
                            f"direct get on {self._stream} failed: {status} "
                            f"{headers.get('Description', '')}"
                        )
                        raise EventStoreError(message, where=subject)
                    received += 1
                    raw = _Raw.from_direct_get(msg)
                    start = raw.sequence + 1
                    yield raw
            finally:
                await sub.unsubscribe()
            if pending == 0 or received == 0:
                return

    def _decode(self, raw: _Raw) -> RecordedEvent:
        headers = raw.headers
        event_type = headers.get(h.EVENT_TYPE, "")
        version = int(headers.get(h.SCHEMA_VERSION, "1"))
        return RecordedEvent(
            event=self._registry.decode(event_type, version, raw.data),
            event_type=event_type,
            schema_version=version,
            event_id=headers.get(h.EVENT_ID, ""),
            aggregate=parse_aggregate_subject(raw.subject),
            sequence=raw.sequence,
            recorded_at=raw.recorded_at,
            actor=headers.get(h.ACTOR, ""),
            command_id=headers.get(h.COMMAND_ID, ""),
            correlation_id=headers.get(h.CORRELATION_ID),
            causation_id=headers.get(h.CAUSATION_ID),
            traceparent=headers.get(h.TRACEPARENT),
        )

    def decode_message(self, msg: Msg) -> RecordedEvent:
        """Decode a message delivered by a consumer on the events stream."""
        return self._decode(_Raw.from_consumer(msg))


class _Raw(msgspec.Struct):
    """A stored message, whichever way it was read."""

    data: bytes
    headers: dict[str, str]
    subject: str
    sequence: int
    recorded_at: datetime

    @classmethod
    def from_direct_get(cls, msg: Msg) -> _Raw:
        headers = msg.headers or {}
        return cls(
            data=msg.data,
            headers=headers,
            subject=headers["Nats-Subject"],
            sequence=int(headers["Nats-Sequence"]),
            recorded_at=_parse_time(headers["Nats-Time-Stamp"]),
        )

    @classmethod
    def from_consumer(cls, msg: Msg) -> _Raw:
        return cls(
            data=msg.data,
            headers=msg.headers or {},
            subject=msg.subject,
            sequence=msg.metadata.sequence.stream,
            recorded_at=_ack_time(msg.reply),
        )


def _ack_time(reply: str) -> datetime:
    # The ack subject carries the stored time in nanoseconds: token 7 of the
    # 9-token form, token 9 of the 12-token form with domain and account. Read it
    # here, truncated like a direct get's, so both paths give the same datetime
    # (nats-py's metadata rounds to the nearest microsecond instead).
    tokens = reply.split(".")
    nanoseconds = int(tokens[7] if len(tokens) == 9 else tokens[9])
    seconds, remainder = divmod(nanoseconds, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, UTC)
    return moment.replace(microsecond=remainder // 1000)


def _parse_time(value: str) -> datetime:
    # JetStream sends nanoseconds; datetime keeps microseconds.
    stamp = value.rstrip("Z")
    whole, _, fraction = stamp.partition(".")
    parsed = datetime.fromisoformat(whole).replace(tzinfo=UTC)
    return parsed.replace(microsecond=int((fraction + "000000")[:6]))
