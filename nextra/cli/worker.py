"""Assembling and running a pump worker process."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

from nextra.cli.platform import Platform
from nextra.events.envelope import AggregateRef
from nextra.eventstore.flowqueues import FlowQueues
from nextra.eventstore.subjects import run_aggregate
from nextra.readmodels.flows import deleted_flows
from nextra.readmodels.runs import overdue_runs
from nextra.runtime.worker.executor import StepRunner, capture_handler_logs
from nextra.runtime.worker.pump import Worker, WorkerSettings

__all__ = ("run_worker_process",)


async def run_worker_process(platform: Platform, stopping: asyncio.Event) -> None:
    settings = platform.settings
    queues = FlowQueues(platform.nc, platform.runs_store)
    runs = platform.run_commands(queues)
    capture_handler_logs(settings.trusted_handler_modules)

    async def deleted(
        flows: Sequence[tuple[str, str]], before: datetime
    ) -> list[tuple[str, str]]:
        return await deleted_flows(platform.engine, flows, before)

    async def overdue() -> Sequence[AggregateRef]:
        found = await overdue_runs(platform.engine, datetime.now(UTC), limit=100)
        return [run_aggregate(*row) for row in found]

    worker = Worker(
        platform.nc,
        queues,
        runs,
        StepRunner(settings.trusted_handler_modules),
        WorkerSettings(
            concurrency=settings.worker_concurrency,
            min_concurrency=min(
                settings.worker_min_concurrency, settings.worker_concurrency
            ),
            ack_wait=settings.worker_ack_wait,
            max_deliver=settings.worker_max_deliver,
            retire_interval=settings.worker_retire_interval,
            shutdown_grace=settings.worker_shutdown_grace,
        ),
        overdue=overdue,
        deleted=deleted,
    )
    await worker.run(stopping)
