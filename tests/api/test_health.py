"""Health, readiness and metrics over HTTP, against real NATS and Postgres."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from nats.aio.client import Client as NatsClient
from structlog.contextvars import merge_contextvars
from structlog.testing import capture_logs

from nextra.api import create_app
from nextra.cli.platform import Platform
from nextra.devstack.postgres import ensure_database
from nextra.kernel.settings import load_settings
from nextra.kernel.tracing import configure_tracing
from tests.support.http import serve

PROBLEM = "application/problem+json"


async def _platform(nats_url: str, database_url: str) -> Platform:
    settings = load_settings({}, nats_url=nats_url, database_url=database_url)
    return await Platform.connect(settings)


@pytest.fixture
async def platform(
    nats_url: str, database_url: str, events_stream: str
) -> AsyncIterator[Platform]:
    platform = await _platform(nats_url, database_url)
    yield platform
    await platform.close()


@pytest.fixture
async def client(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with serve(create_app(platform.api_context())) as client:
        yield client


async def test_health_answers_while_the_process_is_up(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/health")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_when_servers_streams_and_migrations_are_in_place(
    client: httpx.AsyncClient,
) -> None:
    response = await client.get("/ready")

    assert response.status_code == 200
    assert response.json()["checks"] == {
        "nats": "ok",
        "streams": "ok",
        "postgres": "ok",
        "migrations": "ok",
    }


async def test_not_ready_names_the_stream_that_is_missing(
    client: httpx.AsyncClient, nc: NatsClient
) -> None:
    await nc.jetstream().delete_stream("NX_EVENTS")

    response = await client.get("/ready")

    assert response.status_code == 503
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert "NX_EVENTS" in body["checks"]["streams"]
    assert "nextra streams apply" in body["detail"]
    assert body["checks"]["postgres"] == "ok"


async def test_not_ready_when_migrations_are_not_applied(
    nats_url: str, postgres_url: str, events_stream: str
) -> None:
    bare = await ensure_database(postgres_url, "nextra_test_unmigrated")
    platform = await _platform(nats_url, bare)
    try:
        async with serve(create_app(platform.api_context())) as client:
            response = await client.get("/ready")
    finally:
        await platform.close()

    assert response.status_code == 503
    assert "nextra db upgrade" in response.json()["checks"]["migrations"]


async def test_metrics_expose_requests_appends_and_projection_lag(
    client: httpx.AsyncClient,
) -> None:
    await client.get("/health")

    response = await client.get("/metrics")

    assert response.status_code == 200
    text = response.text
    assert (
        'nextra_api_requests_total{method="GET",route="/health",status="200"}' in text
    )
    assert "nextra_api_request_duration_seconds_bucket" in text
    assert 'nextra_projection_lag_events{projection="tenants"} 0.0' in text
    assert "nextra_events_appended" in text


async def test_unknown_route_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.get("/no/such/thing")

    assert response.status_code == 404
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == 404
    assert body["instance"] == "/no/such/thing"
    assert body["type"].startswith("urn:nextra:problem:")


async def test_wrong_method_is_a_problem_document(client: httpx.AsyncClient) -> None:
    response = await client.post("/health")

    assert response.status_code == 405
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_openapi_lists_the_routes(client: httpx.AsyncClient) -> None:
    response = await client.get("/schema/openapi.json")

    assert response.status_code == 200
    paths = response.json()["paths"]
    assert {"/health", "/ready", "/metrics"} <= set(paths)


async def test_correlation_id_is_echoed(client: httpx.AsyncClient) -> None:
    response = await client.get("/health", headers={"X-Correlation-Id": "abc-123"})

    assert response.headers["x-correlation-id"] == "abc-123"


async def test_incoming_trace_context_is_continued(client: httpx.AsyncClient) -> None:
    """The API joins the caller's trace (W3C traceparent) and logs its trace id."""
    configure_tracing("nextra-tests")
    trace_id = "0af7651916cd43dd8448eb211c80319c"

    with capture_logs(processors=[merge_contextvars]) as logs:
        await client.get(
            "/health", headers={"traceparent": f"00-{trace_id}-b7ad6b7169203331-01"}
        )

    request_lines = [line for line in logs if line["event"] == "api.request"]
    assert request_lines
    assert request_lines[-1]["trace_id"] == trace_id
