"""A deleted flow's open runs finish, then workers remove its work consumer."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from nextra.eventstore.flowqueues import FlowQueues
from tests.api.conftest import Running, platform_running, platform_settings
from tests.api.test_runs_api import SLEEPY, started_flow, trigger


@pytest.fixture
async def retiring(
    nats_url: str, database_url: str, events_stream: str
) -> AsyncIterator[Running]:
    settings = platform_settings(nats_url, database_url, worker_retire_interval=0.2)
    async with platform_running(settings) as running:
        yield running


async def work_consumers(running: Running, tenant_id: str) -> set[str]:
    queues = FlowQueues(running.platform.nc, running.platform.runs_store)
    return {
        queue.flow_id
        for queue in await queues.backlogs()
        if queue.tenant_id == tenant_id
    }


ONE_AT_A_TIME = SLEEPY.replace("listeners:", "max_concurrent_handlers: 1\nlisteners:")


async def test_a_deleted_flows_runs_finish_and_then_its_consumer_goes(
    retiring: Running,
) -> None:
    caller = await retiring.tenant()
    kept = await started_flow(retiring, caller, SLEEPY)
    deleted = await started_flow(retiring, caller, ONE_AT_A_TIME)
    for flow_id in (kept, deleted):
        done = await trigger(
            retiring, caller, flow_id, {"payload": {"text": "0"}}, wait=10
        )
        assert done.json()["status"] == "completed"
    assert await work_consumers(retiring, caller.tenant_id) == {kept, deleted}
    # One run at a time: while the first sleeps, the others wait in the
    # consumer, owed but not handed out.
    started = [
        await trigger(retiring, caller, deleted, {"payload": {"text": "0.4"}})
        for _ in range(3)
    ]

    gone = await retiring.http.delete(f"/api/flows/{deleted}", headers=caller.headers)

    assert gone.status_code == 204
    refused = await trigger(retiring, caller, deleted, {"payload": {"text": "0"}})
    assert refused.status_code == 404
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while deleted in await work_consumers(retiring, caller.tenant_id):
        assert loop.time() < deadline, "the deleted flow's consumer was not removed"
        await asyncio.sleep(0.1)
    assert await work_consumers(retiring, caller.tenant_id) == {kept}
    for answer in started:
        run_id = answer.json()["run_id"]
        run = await retiring.http.get(f"/api/runs/{run_id}", headers=caller.headers)
        assert run.json()["status"] == "completed"
