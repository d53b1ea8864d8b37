"""Read your writes: a write answers once the read model shows it, or soon after."""

from __future__ import annotations

from nextra.api.context import ApiContext
from nextra.eventstore.base import AppendResult
from nextra.kernel.errors import ProjectionError
from nextra.readmodels.checkpoints import wait_projected

__all__ = ("projected",)


async def projected(
    context: ApiContext, projection: str, result: AppendResult | None
) -> None:
    """Wait, bounded, until ``projection`` has applied ``result``'s events.

    The write is stored whatever happens here; if the projection lags past the
    timeout the response goes out anyway and lists catch up a little later.
    """
    if result is None:
        return
    try:
        await wait_projected(
            context.engine,
            projection,
            result.last_sequence,
            timeout=context.read_your_writes_timeout,
        )
    except ProjectionError:
        return
