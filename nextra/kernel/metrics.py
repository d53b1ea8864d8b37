"""Process metrics, exposed in Prometheus text format by the API."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = (
    "EVENTS_APPENDED",
    "PROJECTION_LAG",
    "REGISTRY",
    "REQUESTS",
    "REQUEST_DURATION",
)

REGISTRY = CollectorRegistry(auto_describe=True)

REQUESTS = Counter(
    "nextra_api_requests",
    "API requests answered, by route and status code.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
REQUEST_DURATION = Histogram(
    "nextra_api_request_duration_seconds",
    "Time to answer an API request.",
    ["method", "route"],
    registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
EVENTS_APPENDED = Counter(
    "nextra_events_appended",
    "Events this process appended to the event store, by aggregate kind.",
    ["kind"],
    registry=REGISTRY,
)
PROJECTION_LAG = Gauge(
    "nextra_projection_lag_events",
    "Events stored but not yet applied to a projection.",
    ["projection"],
    registry=REGISTRY,
)
