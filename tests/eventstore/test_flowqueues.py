"""Work consumers on a real JetStream: what happens to an event no one can read."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client as NatsClient

from nextra.eventstore.flowqueues import FlowQueues, QueueSettings, queue_name
from nextra.eventstore.headers import EVENT_TYPE, SCHEMA_VERSION
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.kernel.ids import new_id


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
