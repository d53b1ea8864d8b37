"""Read your writes: a write answers once the read model shows it, or soon after."""

from __future__ import annotations

from nextra.api.context import ApiContext
from nextra.eventstore.base import AppendResult
from nextra.kernel.errors import ProjectionError
from nextra.readmodels.checkpoints import wait_projected

__all__ = ("projected", "projected_to")


async def projected(
    context: ApiContext, projection: str, result: AppendResult | None
) -> None:
    """Wait, bounded, until ``projection`` has applied ``result``'s events.

    The write is stored whatever happens here; if the projection lags past the
    timeout the response goes out anyway and lists catch up a little later.
    """
    if result is None:
        return
    await projected_to(
        context,
        projection,
        result.last_sequence,
        timeout=context.read_your_writes_timeout,
    )


async def projected_to(
    context: ApiContext, projection: str, sequence: int, *, timeout: float
) -> None:
    """Wait, at most ``timeout`` seconds, until ``projection`` passed ``sequence``."""
    if sequence <= 0:
        return
    try:
        await wait_projected(context.engine, projection, sequence, timeout=timeout)
    except ProjectionError:
        return
