"""Work consumers on a real JetStream: how many flows get one, and events no one can read."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client as NatsClient
from nats.js.api import StreamConfig

from nextra.events.catalogue import REGISTRY
from nextra.eventstore.flowqueues import FlowQueues, QueueSettings, queue_name
from nextra.eventstore.headers import EVENT_TYPE, SCHEMA_VERSION
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.kernel.errors import EventStoreUnavailable
from nextra.kernel.ids import new_id

# What nats-server 2.15 allows a stream that states no limit of its own.
SERVER_DEFAULT_CONSUMERS = 1000


async def test_more_flows_than_the_servers_default_limit_get_work_consumers(
    nc: NatsClient, runs_store: JetStreamEventStore
) -> None:
    queues = FlowQueues(nc, runs_store)
    tenant_id = new_id()
    flows = [new_id() for _ in range(SERVER_DEFAULT_CONSUMERS + 1)]

    for start in range(0, len(flows), 100):
        batch = flows[start : start + 100]
        await asyncio.gather(
            *(queues.ensure(tenant_id, flow, QueueSettings()) for flow in batch)
        )

    listed = {queue.flow_id for queue in await queues.backlogs()}
    assert listed == set(flows)


async def test_a_stream_at_its_consumer_limit_refuses_a_flow_saying_so(
    nc: NatsClient,
) -> None:
    js = nc.jetstream()
    stream = f"NX_SMALL_{new_id()}"
    await js.add_stream(
        StreamConfig(name=stream, subjects=[f"{stream}.>"], max_consumers=2)
    )
    queues = FlowQueues(nc, JetStreamEventStore(nc, REGISTRY, stream=stream))
    try:
        await queues.ensure("t", "one", QueueSettings())
        await queues.ensure("t", "two", QueueSettings())

        with pytest.raises(EventStoreUnavailable) as refused:
            await queues.ensure("t", "three", QueueSettings())
    finally:
        await js.delete_stream(stream)

    assert refused.value.where == f"{stream}.max_consumers"
    assert "flow three gets no work consumer" in refused.value.message


async def test_an_event_of_an_unknown_version_is_given_back_not_dropped(
    nc: NatsClient, runs_store: JetStreamEventStore
) -> None:
    tenant_id, flow_id = new_id(), new_id()
    queues = FlowQueues(nc, runs_store, undecodable_delay=0.1)
    await queues.start()
    await queues.ensure(tenant_id, flow_id, QueueSettings(max_deliver=5))
    # As a worker of a later version would write it.
    await nc.jetstream().publish(
        f"nx.run.{tenant_id}.{flow_id}.{new_id()}",
        b'{"run_id": "x"}',
        headers={EVENT_TYPE: "run.triggered", SCHEMA_VERSION: "99"},
    )

    first = await queues.pull(tenant_id, flow_id, 10)
    await asyncio.sleep(0.3)
    second = await queues.pull(tenant_id, flow_id, 10)

    assert first == second == []
    info = await nc.jetstream().consumer_info(
        RUNS_STREAM, queue_name(tenant_id, flow_id)
    )
    # Still owed: handed out twice and not acknowledged nor terminated.
    assert info.num_redelivered == 1
    assert info.num_ack_pending == 1
