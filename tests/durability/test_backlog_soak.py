"""A5: with every worker down, triggers are taken at 50/s; two workers drain them."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient

from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.settings import load_settings
from tests.api.conftest import platform_running
from tests.api.test_runs_api import FLOW, started_flow
from tests.durability.test_worker_crash import start_worker, stop
from tests.runtime.conftest import Flow, Runtime

pytestmark = pytest.mark.soak

RATE = 50
SECONDS = 60


async def test_backlog_taken_while_workers_are_down_drains_when_they_return(
    nc: NatsClient,
    store: JetStreamEventStore,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    settings = load_settings(
        {},
        nats_url=nats_url,
        database_url=database_url,
        trusted_handler_modules=("tests.",),
    )
    async with platform_running(settings, worker=False) as running:
        caller = await running.tenant("enterprise")
        flow_id = await started_flow(running, caller, FLOW)
        latencies: list[float] = []
        run_ids: list[str] = []
        begin = time.perf_counter()
        for number in range(RATE * SECONDS):
            # Paced: request n leaves at n / RATE seconds.
            await asyncio.sleep(max(0.0, begin + number / RATE - time.perf_counter()))
            sent = time.perf_counter()
            response = await running.http.post(
                f"/api/flows/{flow_id}/runs",
                json={"payload": {"text": str(number)}},
                headers=caller.headers,
            )
            latencies.append(time.perf_counter() - sent)
            assert response.status_code == 202, response.text
            run_ids.append(response.json()["run_id"])

        log = tmp_path / "workers.log"
        restarted = time.perf_counter()
        workers = [start_worker(nats_url, database_url, log) for _ in range(2)]
        try:
            runtime = Runtime(
                store,
                running.platform.runs_store,
                running.platform.api_context().runs,  # type: ignore[arg-type]
            )
            flow = Flow(caller.tenant_id, flow_id, "enterprise")
            states = [
                await runtime.ended(flow, run_id, timeout=300) for run_id in run_ids
            ]
        finally:
            for worker in workers:
                stop(worker)
        drained = time.perf_counter() - restarted

    latencies.sort()
    p95 = latencies[int(len(latencies) * 0.95)] * 1000
    print(
        f"A5: {len(run_ids)} triggers at {RATE}/s with no worker, ingress p95 "
        f"{p95:.1f} ms; two workers drained the backlog in {drained:.1f} s"
    )
    assert [state.status for state in states] == ["completed"] * len(run_ids)
