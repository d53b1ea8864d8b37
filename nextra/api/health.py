"""Liveness, readiness and metrics: what operators and load balancers ask."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response, get
from litestar.di import NamedDependency
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from nextra.api.context import ApiContext
from nextra.api.problems import problem
from nextra.kernel import metrics

__all__ = ("health", "metrics_text", "ready")


@get("/health", include_in_schema=True, tags=["operations"], sync_to_thread=False)
def health() -> dict[str, str]:
    """The process is up and answering."""
    return {"status": "ok"}


@get("/ready", tags=["operations"])
async def ready(
    request: Request[Any, Any, Any], context: NamedDependency[ApiContext]
) -> Response[Any]:
    """NATS and Postgres answer, streams match their definitions, migrations are current.

    Answers 503 with a problem document listing each failed check otherwise.
    """
    checks = await context.readiness()
    failed = {name: reason for name, reason in checks.items() if reason is not None}
    if failed:
        return problem(
            request,
            status=503,
            code="not-ready",
            title="Not ready",
            detail="; ".join(f"{name}: {reason}" for name, reason in failed.items()),
            checks={name: reason or "ok" for name, reason in checks.items()},
        )
    return Response({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


@get("/metrics", tags=["operations"], media_type=CONTENT_TYPE_LATEST)
async def metrics_text(context: NamedDependency[ApiContext]) -> bytes:
    """Prometheus text exposition of this process's metrics."""
    await context.refresh_metrics()
    return generate_latest(metrics.REGISTRY)
