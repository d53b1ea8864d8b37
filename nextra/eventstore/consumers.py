"""Durable consumers on the events stream, for projectors and workers."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nextra.events.envelope import RecordedEvent
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.errors import EventStoreError, EventStoreUnavailable

__all__ = ("Delivery", "DurableSubscription", "open_durable")

_HEARTBEAT = "100"
_REQUEST_OVER = frozenset({"404", "408", "409"})
# A request silent this long past its expiry is presumed lost (say, to a reconnect).
_SILENCE = 2.0
# Below this, a lingering pull request is not worth sending.
_SHORTEST_WAIT = 0.01


class Delivery(msgspec.Struct, frozen=True):
    """One event handed out by a consumer, to be acknowledged once handled."""

    event: RecordedEvent
    msg: Msg

    @property
    def sequence(self) -> int:
        return self.event.sequence


class _Undecodable(msgspec.Struct, frozen=True):
    """A delivered message that did not decode; fetch raises its error."""

    msg: Msg
    error: Exception


class DurableSubscription:
    """A pull consumer that acknowledges cumulatively and reads one batch ahead.

    Acking a delivery acknowledges every earlier one (``AckPolicy.ALL``): the
    caller commits a batch, then acks its last delivery.

    Messages come to an inbox of its own and are decoded as they arrive. When a
    full batch is handed out, the next one is requested at once, so the server
    delivers it (and this process decodes it) while the caller still applies the
    current one. One pull request is open at a time: at most two batches are
    delivered and not yet acknowledged.
    """

    def __init__(self, store: JetStreamEventStore, nc: NatsClient, name: str) -> None:
        self._store = store
        self._nc = nc
        self.name = name
        self._next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{store.stream}.{name}"
        self._inbox = nc.new_inbox()
        self._subscription: Subscription | None = None
        self._ready: deque[Delivery | _Undecodable] = deque()
        self._arrived = asyncio.Event()
        self._wanted = 0
        # The open pull request: messages it may still deliver, and the loop time
        # after which, silent, it is presumed lost (a reconnect drops it).
        self._owed = 0
        self._open_until = 0.0
        self._refusal: str | None = None
        self._caught_up = False

    async def start(self) -> None:
        try:
            self._subscription = await self._nc.subscribe(
                self._inbox, cb=self._on_message
            )
        except nats.errors.ConnectionClosedError as error:
            raise self._lost() from error

    def _lost(self) -> EventStoreUnavailable:
        message = f"consumer {self.name} lost its NATS connection"
        return EventStoreUnavailable(message, where=self.name)

    async def _on_message(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status") if headers else None
        if status is None:
            self._owed -= 1
            self._open_until = max(self._open_until, _now() + _SILENCE)
            try:
                self._ready.append(Delivery(self._store.decode_message(msg), msg))
            except Exception as error:  # noqa: BLE001 - raised by fetch, in order
                self._ready.append(_Undecodable(msg, error))
            # Nothing more behind this message: hand out what there is now rather
            # than wait for a full batch, so a lone event is not held back.
            self._caught_up = _pending(msg) == 0
            if self._caught_up or self._owed <= 0 or len(self._ready) >= self._wanted:
                self._arrived.set()
            return
        if status == _HEARTBEAT:
            return
        # No messages (404), expired (408) or ended early (409): the request is over.
        self._owed = 0
        if status not in _REQUEST_OVER:
            description = headers.get("Description", "") if headers else ""
            self._refusal = f"{status} {description}".strip()
        self._arrived.set()

    def _request_open(self) -> bool:
        return self._owed > 0 and _now() < self._open_until

    async def _request(self, batch: int, *, wait: float | None) -> None:
        """Ask for ``batch`` messages: those available now, or those within ``wait``."""
        body: dict[str, object] = {"batch": batch}
        if wait is None:
            body["no_wait"] = True
        else:
            body["expires"] = int(wait * 1_000_000_000)
        try:
            await self._nc.publish(
                self._next_subject, msgspec.json.encode(body), reply=self._inbox
            )
        except nats.errors.ConnectionClosedError as error:
            raise self._lost() from error
        self._owed = batch
        self._open_until = _now() + (wait or 0.0) + _SILENCE

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to ``batch`` deliveries, or none if nothing came within ``timeout``."""
        if self._nc.is_closed:
            raise self._lost()
        deadline = _now() + timeout
        self._wanted = batch
        asked = lingered = False
        while len(self._ready) < batch:
            if self._ready and self._caught_up:
                break
            if self._request_open():
                if not await self._wait(deadline):
                    break
                continue
            if self._ready:
                break  # the last request delivered all there was
            remaining = deadline - _now()
            if not asked:
                await self._request(batch, wait=None)
                asked = True
            elif not lingered and remaining > _SHORTEST_WAIT:
                # Nothing available: wait on the server for what comes next.
                await self._request(batch, wait=remaining - _SHORTEST_WAIT / 2)
                lingered = True
            else:
                # The server ended the wait early; ask again only after the deadline.
                await asyncio.sleep(max(remaining, 0.0))
                break
        self._raise_refusal()

        taken: list[Delivery] = []
        while self._ready and len(taken) < batch:
            item = self._ready.popleft()
            if isinstance(item, _Undecodable):
                raise item.error
            taken.append(item)
        if len(taken) == batch and not self._request_open():
            # Likely more behind: have the next batch delivered meanwhile.
            await self._request(batch, wait=None)
        return taken

    async def _wait(self, deadline: float) -> bool:
        """Wait for messages or the request to end; False once past ``deadline``."""
        remaining = deadline - _now()
        if remaining <= 0:
            return False
        self._arrived.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(remaining):
                await self._arrived.wait()
        return True

    def _raise_refusal(self) -> None:
        refusal, self._refusal = self._refusal, None
        if refusal is not None:
            message = f"consumer {self.name} was refused a batch: {refusal}"
            raise EventStoreError(message, where=self.name)

    async def ack(self, delivery: Delivery) -> None:
        await delivery.msg.ack()

    async def close(self) -> None:
        if self._subscription is not None:
            with contextlib.suppress(Exception):
                await self._subscription.unsubscribe()
        self._ready.clear()


def _pending(msg: Msg) -> int | None:
    """Messages the consumer still holds behind ``msg``, from its ack subject."""
    try:
        return int(msg.metadata.num_pending)
    except (AttributeError, TypeError, ValueError, IndexError):
        return None


def _now() -> float:
    return asyncio.get_running_loop().time()


async def open_durable(
    nc: NatsClient,
    store: JetStreamEventStore,
    *,
    name: str,
    subject: str,
    after: int,
    ack_wait: float = 30.0,
    max_ack_pending: int = 5000,
) -> DurableSubscription:
    """(Re)create durable consumer ``name`` starting after sequence ``after``.

    The caller's own checkpoint is the truth about where it got to, so the
    consumer is recreated from it rather than trusted: after a crash between
    commit and ack, nothing already committed is delivered as new.
    """
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_consumer(store.stream, name)
    start = (
        {"deliver_policy": DeliverPolicy.ALL}
        if after == 0
        else {
            "deliver_policy": DeliverPolicy.BY_START_SEQUENCE,
            "opt_start_seq": after + 1,
        }
    )
    config = ConsumerConfig(
        durable_name=name,
        filter_subject=subject,
        ack_policy=AckPolicy.ALL,
        ack_wait=ack_wait,
        max_ack_pending=max_ack_pending,
        **start,
    )
    try:
        await js.add_consumer(store.stream, config)
    except nats.js.errors.APIError as error:
        message = (
            f"could not create consumer {name} on {store.stream}: {error.description}"
        )
        raise EventStoreError(message, where=name) from error
    subscription = DurableSubscription(store, nc, name)
    await subscription.start()
    return subscription
