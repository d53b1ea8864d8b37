"""One work consumer per flow on the runs stream, and pulling steps from them.

Workers take their next steps from the run events themselves: a ``run.triggered``
or ``run.step_completed`` event names the messages that are owed a step. Each
flow has its own durable consumer on ``nx.run.<tenant>.<flow>.*``, so a worker
can choose which flow to serve next (fair scheduling), and the consumer's
``max_ack_pending`` caps how many of the flow's events are being worked on at
once across all workers (the flow's concurrency limit).
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from nextra.events.envelope import RecordedEvent
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import RUNS_PREFIX, flow_runs_filter
from nextra.kernel.errors import EventStoreError, EventStoreUnavailable
from nextra.kernel.logging import get_logger

__all__ = (
    "FlowQueue",
    "FlowQueues",
    "QueueSettings",
    "WorkItem",
    "parse_wake",
    "queue_name",
    "wake_subject",
)

log = get_logger(__name__)

_NAME_PREFIX = "work_"
# JetStream's error codes for a consumer that does not exist, and for a stream
# that holds as many consumers as it allows.
_CONSUMER_NOT_FOUND = 10014
_CONSUMER_LIMIT = 10026
WAKE_PREFIX = "nx.wake"


def queue_name(tenant_id: str, flow_id: str) -> str:
    """The durable consumer that hands out one flow's run events."""
    return f"{_NAME_PREFIX}{tenant_id}_{flow_id}"


def wake_subject(tenant_id: str, flow_id: str) -> str:
    """Where a flow's new work is announced (core NATS, best effort)."""
    return f"{WAKE_PREFIX}.{tenant_id}.{flow_id}"


class QueueSettings(msgspec.Struct, frozen=True, kw_only=True):
    """How a flow's work consumer behaves.

    Attributes:
        max_in_flight: Events of the flow handed out and not yet acknowledged,
            across all workers: the flow's concurrency limit.
        ack_wait: Seconds before an unacknowledged event is handed out again (a
            worker that died); workers extend it while a step runs.
        max_deliver: Deliveries before the server gives up on an event; workers
            fail the run one delivery before that (a poison message).
    """

    max_in_flight: int = 20
    ack_wait: float = 30.0
    max_deliver: int = 5


class FlowQueue(msgspec.Struct, frozen=True):
    """A flow's work consumer as the server reports it."""

    tenant_id: str
    flow_id: str
    pending: int
    in_flight: int


class WorkItem(msgspec.Struct, frozen=True):
    """One delivered run event and its delivery count."""

    event: RecordedEvent
    msg: Msg
    attempt: int


class FlowQueues:
    """Creates flow consumers and pulls from them over one shared inbox.

    Pulls never wait long: a pull asks for what is there now and returns, so a
    worker can move on to another flow. A pull against a flow already at its
    in-flight limit ends empty after ``expires``.

    Args:
        undecodable_delay: Seconds before an event this process cannot decode
            is handed out again, perhaps to a worker of a newer version.
    """

    def __init__(
        self,
        nc: NatsClient,
        store: JetStreamEventStore,
        *,
        expires: float = 0.02,
        timeout: float = 5.0,
        undecodable_delay: float = 5.0,
    ) -> None:
        self._nc = nc
        self._store = store
        self._expires = expires
        self._timeout = timeout
        self._undecodable_delay = undecodable_delay
        self._ensured: dict[str, QueueSettings] = {}
        self._inbox = nc.new_inbox()
        self._pulls: dict[str, _Pull] = {}
        self._tokens_to_names: dict[str, str] = {}
        self._tokens = itertools.count()
        self._started = False

    async def start(self) -> None:
        if not self._started:
            await self._nc.subscribe(f"{self._inbox}.*", cb=self._on_message)
            self._started = True

    async def ensure(
        self, tenant_id: str, flow_id: str, settings: QueueSettings
    ) -> None:
        """Make sure the flow's consumer exists with ``settings``.

        Remembered per process, so the server is asked once per flow.
        """
        name = queue_name(tenant_id, flow_id)
        if self._ensured.get(name) == settings:
            return
        config = ConsumerConfig(
            durable_name=name,
            filter_subject=flow_runs_filter(tenant_id, flow_id),
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=settings.ack_wait,
            max_deliver=settings.max_deliver,
            max_ack_pending=settings.max_in_flight,
        )
        js = self._nc.jetstream()
        try:
            # Creating with the same name updates the limits of one that exists
            # (a tier or the flow's concurrency changed).
            await js.add_consumer(self._store.stream, config)
        except nats.js.errors.APIError as error:
            if error.err_code == _CONSUMER_LIMIT:
                message = (
                    f"stream {self._store.stream} holds as many consumers as it "
                    f"allows, so flow {flow_id} gets no work consumer; delete flows "
                    "that no longer run or raise max_consumers in its definition"
                )
                raise EventStoreUnavailable(
                    message, where=f"{self._store.stream}.max_consumers"
                ) from error
            message = f"could not create work consumer {name}: {error.description}"
            raise EventStoreError(message, where=name) from error
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            message = f"JetStream did not create work consumer {name}"
            raise EventStoreUnavailable(message, where=name) from error
        self._ensured[name] = settings

    async def remove(self, tenant_id: str, flow_id: str) -> None:
        """Delete the flow's consumer; one already gone is not an error."""
        name = queue_name(tenant_id, flow_id)
        self._ensured.pop(name, None)
        try:
            reply = await self._nc.request(
                f"$JS.API.CONSUMER.DELETE.{self._store.stream}.{name}",
                b"",
                timeout=self._timeout,
            )
        except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
            message = f"JetStream did not delete work consumer {name}"
            raise EventStoreUnavailable(message, where=name) from error
        refused = msgspec.json.decode(reply.data).get("error")
        if refused is not None and refused.get("err_code") != _CONSUMER_NOT_FOUND:
            message = (
                f"could not delete work consumer {name}: {refused.get('description')}"
            )
            raise EventStoreError(message, where=name)

    async def backlogs(self) -> list[FlowQueue]:
        """Every flow's work consumer with its backlog."""
        queues: list[FlowQueue] = []
        offset = 0
        while True:
            request = msgspec.json.encode({"offset": offset})
            try:
                reply = await self._nc.request(
                    f"$JS.API.CONSUMER.LIST.{self._store.stream}",
                    request,
                    timeout=self._timeout,
                )
            except (nats.errors.TimeoutError, nats.errors.NoRespondersError) as error:
                message = "JetStream did not list the work consumers"
                raise EventStoreUnavailable(
                    message, where=self._store.stream
                ) from error
            page = msgspec.json.decode(reply.data)
            consumers = page.get("consumers") or []
            for info in consumers:
                parsed = _parse_queue(info)
                if parsed is None:
                    continue
                queues.append(
                    FlowQueue(
                        parsed[0],
                        parsed[1],
                        pending=int(info.get("num_pending", 0)),
                        in_flight=int(info.get("num_ack_pending", 0)),
                    )
                )
            offset += len(consumers)
            if not consumers or offset >= int(page.get("total", 0)):
                return queues

    async def pull(self, tenant_id: str, flow_id: str, batch: int) -> list[WorkItem]:
        """Up to ``batch`` events of the flow that are waiting now.

        One pull per flow at a time: delivered messages carry the stream's
        subject, not the pull's inbox, so they are matched to their pull by the
        consumer named in their ack subject.
        """
        name = queue_name(tenant_id, flow_id)
        if name in self._pulls:
            return []
        token = str(next(self._tokens))
        pull = _Pull(batch, token)
        self._pulls[name] = pull
        self._tokens_to_names[token] = name
        request = msgspec.json.encode(
            {
                "batch": batch,
                "no_wait": True,
                "expires": int(self._expires * 1_000_000_000),
            }
        )
        try:
            await self._nc.publish(
                f"$JS.API.CONSUMER.MSG.NEXT.{self._store.stream}.{name}",
                request,
                reply=f"{self._inbox}.{token}",
            )
            try:
                await asyncio.wait_for(pull.over.wait(), self._expires + self._timeout)
            except TimeoutError:
                log.warning("queue.pull_lost", tenant_id=tenant_id, flow_id=flow_id)
        finally:
            self._pulls.pop(name, None)
            self._tokens_to_names.pop(token, None)
        return pull.items

    async def _on_message(self, msg: Msg) -> None:
        if not msg.reply:
            # A status: the pull it answers is over (404 nothing waiting, 408
            # expired, 409 the consumer refused).
            name = self._tokens_to_names.get(msg.subject.rpartition(".")[2])
            over = self._pulls.get(name) if name is not None else None
            if over is not None:
                over.over.set()
            return
        try:
            metadata = msg.metadata
        except Exception:  # noqa: BLE001 - not a JetStream delivery
            return
        pull = self._pulls.get(metadata.consumer or "")
        if pull is None:
            # Its pull gave up; the server hands the message out again later.
            return
        try:
            event = self._store.decode_message(msg)
        except Exception as error:  # noqa: BLE001 - reported, not raised
            # Given back, not dropped: in a rolling upgrade it may be a newer
            # event version that a newer worker reads. One that no worker reads
            # stops after the consumer's last delivery; the watchdog then ends
            # its run at the deadline.
            log.error(
                "queue.undecodable",
                subject=msg.subject,
                delivery=metadata.num_delivered,
                error=str(error),
            )
            await msg.nak(delay=self._undecodable_delay)
            return
        pull.items.append(WorkItem(event, msg, int(metadata.num_delivered)))
        if len(pull.items) >= pull.batch:
            pull.over.set()


class _Pull:
    __slots__ = ("batch", "items", "over", "token")

    def __init__(self, batch: int, token: str) -> None:
        self.batch = batch
        self.token = token
        self.items: list[WorkItem] = []
        self.over = asyncio.Event()


def _parse_queue(info: dict[str, Any]) -> tuple[str, str] | None:
    # Names are not parsed: tenant ids may hold the separator. The filter is
    # the flow's run subjects, nx.run.<tenant>.<flow>.*.
    if not str(info.get("name", "")).startswith(_NAME_PREFIX):
        return None
    parts = str(info.get("config", {}).get("filter_subject", "")).split(".")
    if len(parts) != 5 or ".".join(parts[:2]) != RUNS_PREFIX:
        return None
    return parts[2], parts[3]


def parse_wake(subject: str) -> tuple[str, str] | None:
    """The tenant and flow a wake-up subject names."""
    parts = subject.split(".")
    if len(parts) != 4 or parts[0] + "." + parts[1] != WAKE_PREFIX:
        return None
    return parts[2], parts[3]
