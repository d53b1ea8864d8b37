"""Per-request context, the one log line per request, and request metrics."""

from __future__ import annotations

import time

import structlog
from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send
from opentelemetry import propagate, trace

from nextra.kernel import metrics
from nextra.kernel.ids import new_id
from nextra.kernel.logging import get_logger
from nextra.kernel.tracing import get_tracer

__all__ = ("observe_requests",)

log = get_logger("nextra.api")
tracer = get_tracer("nextra.api")


def observe_requests(app: ASGIApp) -> ASGIApp:
    """ASGI middleware: bind request context, count, time and log each request."""

    async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await app(scope, receive, send)
            return

        headers = {
            name.decode("latin-1"): value.decode("latin-1")
            for name, value in scope.get("headers") or []
        }
        correlation_id = headers.get("x-correlation-id") or new_id()
        parent = propagate.extract(headers)
        started = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [
                    *message.get("headers", []),
                    (b"x-correlation-id", correlation_id.encode()),
                ]
            await send(message)

        structlog.contextvars.clear_contextvars()
        span = tracer.start_span(
            f"{scope['method']} {scope['path']}",
            context=parent,
            kind=trace.SpanKind.SERVER,
        )
        trace_id = format(span.get_span_context().trace_id, "032x")
        structlog.contextvars.bind_contextvars(
            correlation_id=correlation_id, trace_id=trace_id
        )
        try:
            with trace.use_span(span, end_on_exit=True):
                await app(scope, receive, send_wrapper)
        finally:
            seconds = time.perf_counter() - started
            route = scope.get("path_template") or "unmatched"
            method = scope["method"]
            metrics.REQUESTS.labels(
                method=method, route=route, status=str(status)
            ).inc()
            metrics.REQUEST_DURATION.labels(method=method, route=route).observe(seconds)
            log.info(
                "api.request",
                method=method,
                path=scope["path"],
                status=status,
                duration_ms=round(seconds * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()

    return middleware
