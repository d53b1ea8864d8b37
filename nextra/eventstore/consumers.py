"""Durable consumers on the events stream, for projectors and workers."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nextra.events.envelope import RecordedEvent
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.errors import EventStoreError, EventStoreUnavailable

__all__ = ("Delivery", "DurableSubscription", "open_durable")


class Delivery(msgspec.Struct, frozen=True):
    """One event handed out by a consumer, to be acknowledged once handled."""

    event: RecordedEvent
    msg: Msg

    @property
    def sequence(self) -> int:
        return self.event.sequence


class DurableSubscription:
    """A pull consumer that acknowledges cumulatively.

    Acking a delivery acknowledges every earlier one (``AckPolicy.ALL``): the
    caller commits a batch, then acks its last delivery.
    """

    def __init__(
        self, store: JetStreamEventStore, subscription: object, name: str
    ) -> None:
        self._store = store
        self._subscription = subscription
        self.name = name

    async def fetch(self, batch: int, timeout: float) -> list[Delivery]:
        """Up to ``batch`` deliveries, or none if nothing came within ``timeout``."""
        try:
            messages: Sequence[Msg] = await self._subscription.fetch(  # type: ignore[attr-defined]
                batch, timeout=timeout
            )
        except nats.errors.TimeoutError:
            return []
        except nats.errors.ConnectionClosedError as error:
            message = f"consumer {self.name} lost its NatsClient connection"
            raise EventStoreUnavailable(message, where=self.name) from error
        return [Delivery(self._store.decode_message(msg), msg) for msg in messages]

    async def ack(self, delivery: Delivery) -> None:
        await delivery.msg.ack()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._subscription.unsubscribe()  # type: ignore[attr-defined]


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
        subscription = await js.pull_subscribe_bind(durable=name, stream=store.stream)
    except nats.js.errors.APIError as error:
        message = (
            f"could not create consumer {name} on {store.stream}: {error.description}"
        )
        raise EventStoreError(message, where=name) from error
    return DurableSubscription(store, subscription, name)
