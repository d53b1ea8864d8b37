"""OpenTelemetry set up once per process, so trace context exists to propagate.

Spans get real ids whether or not an exporter is configured; the event store
writes the current context into each event's ``traceparent`` header, so one trace
follows a command from the API through the projectors and, later, the workers.
"""

from __future__ import annotations

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

__all__ = ("configure_tracing", "get_tracer")

_configured = False


def configure_tracing(service_name: str) -> None:
    global _configured
    if _configured:
        return
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    trace.set_tracer_provider(provider)
    _configured = True


def get_tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)
