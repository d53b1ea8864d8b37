"""The projector process: one runner per catalogued projection, side by side."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.logging import get_logger
from nextra.readmodels.projection import ProjectionSpec
from nextra.readmodels.runner import ProjectionRunner

__all__ = ("run_projector",)

log = get_logger("nextra.projector")


async def run_projector(
    specs: Sequence[ProjectionSpec],
    *,
    nc: NatsClient,
    store_for: Callable[[str], JetStreamEventStore],
    engine: AsyncEngine,
    stopping: asyncio.Event,
    batch_size: int = 500,
) -> None:
    """Run every projection until ``stopping`` is set.

    Each projection follows the store whose stream holds its subject, as
    ``store_for`` tells. A projection that cannot run (say, its version changed
    and it awaits a rebuild) is logged and left stopped; the others go on.
    """
    runners = [
        ProjectionRunner(
            spec,
            spec.create(),
            engine,
            store_for(spec.subject),
            nc,
            batch_size=batch_size,
        )
        for spec in specs
    ]

    async def guarded(runner: ProjectionRunner) -> None:
        try:
            await runner.run(stopping)
        except Exception as error:
            log.exception(
                "projection.stopped", projection=runner.spec.name, error=str(error)
            )

    log.info("projector.started", projections=[spec.name for spec in specs])
    await asyncio.gather(*(guarded(runner) for runner in runners))
    log.info("projector.stopped")
