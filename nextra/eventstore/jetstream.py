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
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
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
from nextra.eventstore.base import AppendResult, Write
from nextra.eventstore.subjects import (
    ALL_EVENTS,
    ALL_RUNS,
    aggregate_subject,
    parse_aggregate_subject,
)
from nextra.kernel import metrics
from nextra.kernel.errors import (
    ConcurrencyError,
    EventContractError,
    EventStoreError,
    EventStoreTimeout,
    EventStoreUnavailable,
    ValidationError,
)
from nextra.kernel.ids import new_id
from nextra.kernel.text import json_has_nul

__all__ = (
    "DEFAULT_STREAM",
    "MAX_EVENTS_PER_APPEND",
    "RUNS_STREAM",
    "JetStreamEventStore",
    "Write",
)

DEFAULT_STREAM = "NX_EVENTS"
RUNS_STREAM = "NX_RUNS"
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


class _Outgoing(msgspec.Struct, frozen=True):
    subject: str
    payload: bytes
    headers: dict[str, str]
    expect: int | None


class _Outcome(msgspec.Struct, frozen=True):
    last_sequence: int
    duplicate: bool = False


def _split(writes: Sequence[Write], last_sequence: int) -> list[AppendResult]:
    # A batch's events get consecutive sequences ending at the commit's.
    sequence = last_sequence - sum(len(write.events) for write in writes) + 1
    results = []
    for write in writes:
        first = sequence
        sequence += len(write.events)
        results.append(AppendResult(first_sequence=first, last_sequence=sequence - 1))
    return results


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
        [result] = await self.append_atomic(
            [Write(aggregate, events, expected_version)], context=context
        )
        return result

    async def append_atomic(
        self, writes: Sequence[Write], *, context: CommandContext
    ) -> list[AppendResult]:
        """Append to several aggregates in one commit: all are stored, or none.

        Each write carries its own expected version, checked at commit time. This
        is how a decision that spans aggregates (a flow created against its
        tenant's flow limit) stays consistent under concurrent commands.

        Returns:
            One result per write, in order.

        Raises:
            ConcurrencyError: One of the aggregates moved past its expected version.
            EventStoreTimeout: As for :meth:`append`.
        """
        count = sum(len(write.events) for write in writes)
        where = ", ".join(str(write.aggregate) for write in writes)
        if not writes or any(not write.events for write in writes):
            message = f"append to {where or 'nothing'} needs at least one event each"
            raise ValidationError(message, expected=">= 1 event", got=0)
        if count > MAX_EVENTS_PER_APPEND:
            message = f"append to {where} has too many events for one commit"
            raise ValidationError(
                message, expected=f"<= {MAX_EVENTS_PER_APPEND}", got=count
            )
        if len({write.aggregate for write in writes}) != len(writes):
            message = f"append names an aggregate twice: {where}"
            raise ValidationError(message, where=where)

        messages = self._encode(writes, context, single=count == 1)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._retry_window
        delay = 0.05

        while True:
            outcome: _Outcome | None
            try:
                if count == 1:
                    outcome = await self._publish_one(messages[0])
                else:
                    async with self._batch_slots:
                        outcome = await self._publish_batch(messages)
            except _Transient as error:
                if loop.time() + delay >= deadline:
                    message = (
                        f"append to {where} got no acknowledgement within "
                        f"{self._retry_window:.0f}s; it may or may not be stored, and "
                        f"repeating command {context.command_id} is safe"
                    )
                    raise EventStoreTimeout(message, where=where) from error
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except ConcurrencyError:
                original = await self._find_command(writes, context.command_id)
                if original is None:
                    raise
                return original
            if outcome is None or outcome.duplicate:
                original = await self._find_command(writes, context.command_id)
                if original is None:
                    message = (
                        f"the store reported command {context.command_id} as a "
                        f"duplicate, but {where} holds no event of it"
                    )
                    raise EventStoreError(message, where=where)
                return original
            for write in writes:
                kind = write.aggregate.kind
                metrics.EVENTS_APPENDED.labels(kind=kind).inc(len(write.events))
            return _split(writes, outcome.last_sequence)

    def _encode(
        self, writes: Sequence[Write], context: CommandContext, *, single: bool
    ) -> list[_Outgoing]:
        traceparent = context.traceparent
        if traceparent is None:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            traceparent = carrier.get(h.TRACEPARENT)

        # Ids are fixed here, once, so every retry sends the very same messages.
        messages = []
        index = 0
        for write in writes:
            subject = aggregate_subject(write.aggregate)
            for position, event in enumerate(write.events):
                headers = {
                    h.EVENT_TYPE: event.type_name,
                    h.SCHEMA_VERSION: str(event.schema_version),
                    h.EVENT_ID: new_id(),
                    h.TENANT: write.aggregate.tenant_id,
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
                # The version check rides on an aggregate's first message only:
                # the server checks it against the stream before the batch.
                expect = write.expected_version if position == 0 else None
                payload = self._registry.encode(event)
                if json_has_nul(payload):
                    # Read models are PostgreSQL, whose text cannot hold U+0000;
                    # an event carrying one would stop every projection of it.
                    message = (
                        f"{event.type_name} has text with a NUL character (U+0000), "
                        "which Nextra does not store"
                    )
                    raise ValidationError(message, where=event.type_name)
                messages.append(_Outgoing(subject, payload, headers, expect))
                index += 1
        return messages

    async def _publish_one(self, message: _Outgoing) -> _Outcome:
        headers = message.headers
        if message.expect is not None:
            headers = {
                **headers,
                "Nats-Expected-Last-Subject-Sequence": str(message.expect),
            }
        ack = await self._request(message.subject, message.payload, headers)
        self._raise_for(ack, [message])
        return _Outcome(last_sequence=ack.seq, duplicate=ack.duplicate)

    async def _publish_batch(self, messages: list[_Outgoing]) -> _Outcome | None:
        # ADR-50: the first message is a request (empty reply when accepted), the
        # middle ones plain publishes, the last one commits and gets the PubAck.
        # A fresh batch id per attempt: an abandoned attempt cannot be resumed.
        batch_id = new_id()
        last = len(messages)
        for number, message in enumerate(messages, start=1):
            headers = {
                **message.headers,
                "Nats-Batch-Id": batch_id,
                "Nats-Batch-Sequence": str(number),
            }
            if message.expect is not None:
                headers["Nats-Expected-Last-Subject-Sequence"] = str(message.expect)
            if number == last:
                headers["Nats-Batch-Commit"] = "1"
                ack = await self._request(message.subject, message.payload, headers)
                if ack.error is not None and ack.error.err_code == _BATCH_DUPLICATE:
                    return None
                self._raise_for(ack, messages)
                return _Outcome(last_sequence=ack.seq)
            if number == 1:
                ack = await self._request(
                    message.subject, message.payload, headers, empty_ok=True
                )
                self._raise_for(ack, messages)
            else:
                await self._nc.publish(
                    message.subject, message.payload, headers=headers
                )
        unreachable = "the loop returns on the last message"
        raise AssertionError(unreachable)

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

    def _raise_for(self, ack: _PubAck, messages: Sequence[_Outgoing]) -> None:
        if ack.error is None:
            return
        error = ack.error
        if error.err_code == _WRONG_LAST_SEQUENCE:
            # The server names the sequence it found, not the subject; with one
            # checked aggregate that is unambiguous.
            checked = [m for m in messages if m.expect is not None]
            actual = error.description.rsplit(":", 1)[-1].strip()
            found = int(actual) if actual.isdigit() else None
            if len(checked) == 1:
                aggregate = str(parse_aggregate_subject(checked[0].subject))
                raise ConcurrencyError(aggregate, checked[0].expect or 0, found)
            names = ", ".join(str(parse_aggregate_subject(m.subject)) for m in checked)
            # The server does not say which subject moved; name them all and
            # the first one's expectation.
            aggregates = f"one of {names}"
            raise ConcurrencyError(aggregates, checked[0].expect or 0, found)
        if error.code == 503 or error.err_code in _BATCH_RETRYABLE:
            raise _Transient(error.description)
        message = (
            f"stream {self._stream} refused the append to {messages[0].subject}: "
            f"{error.description} (error {error.err_code})"
        )
        raise EventStoreError(message, got=error.err_code, where=self._stream)

    async def _find_command(
        self, writes: Sequence[Write], command_id: str
    ) -> list[AppendResult] | None:
        """The results of an earlier append of ``command_id``, if it was stored."""
        results = []
        for write in writes:
            after = write.expected_version or 0
            subject = aggregate_subject(write.aggregate)
            sequences = [
                raw.sequence
                async for raw in self._read_raw(subject, after)
                if raw.headers.get(h.COMMAND_ID) == command_id
            ]
            if not sequences:
                return None
            results.append(
                AppendResult(
                    first_sequence=sequences[0],
                    last_sequence=sequences[-1],
                    duplicate=True,
                )
            )
        return results

    async def load(self, aggregate: AggregateRef) -> list[RecordedEvent]:
        subject = aggregate_subject(aggregate)
        return [self._decode(raw) async for raw in self._read_raw(subject, 0)]

    async def read(
        self,
        *,
        after: int = 0,
        subject: str = ALL_EVENTS,
        undecodable: Callable[[int, EventContractError], None] | None = None,
    ) -> AsyncGenerator[RecordedEvent, None]:
        """Events on ``subject`` after sequence ``after``, in stream order.

        With ``undecodable``, an event this process cannot decode (a version it
        does not know yet) is handed to it with its sequence and skipped, rather
        than ending the read.
        """
        async for raw in self._read_raw(subject, after):
            if undecodable is None:
                yield self._decode(raw)
                continue
            try:
                recorded = self._decode(raw)
            except EventContractError as error:
                undecodable(raw.sequence, error)
                continue
            yield recorded

    async def last_sequence(self, subject: str = ALL_EVENTS) -> int:
        if subject in (ALL_EVENTS, ALL_RUNS):
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
