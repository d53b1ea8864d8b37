"""Connections to NATS and Postgres, and the objects every process builds on them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.api.context import ApiContext
from nextra.api.tenant_cache import TenantCache
from nextra.app.flows import FlowCommands
from nextra.app.organisms import Organisms
from nextra.app.runs import RunCommands
from nextra.app.tenants import TenantCommands
from nextra.auth.jwt import JwksVerifier
from nextra.auth.svix import InMemoryReplayGuard, SvixVerifier
from nextra.devstack.nats import MIN_VERSION
from nextra.domain.flows import HandlerPolicy, validate_organism
from nextra.domain.flows.validate import load_organism
from nextra.events.catalogue import REGISTRY
from nextra.events.tenants import Tier
from nextra.eventstore.flowqueues import FlowQueues, QueueSettings, wake_subject
from nextra.eventstore.jetstream import (
    DEFAULT_STREAM,
    RUNS_STREAM,
    JetStreamEventStore,
)
from nextra.eventstore.subjects import RUNS_PREFIX
from nextra.eventstore.topology import (
    StreamDefinition,
    load_stream_definitions,
    plan_streams,
)
from nextra.kernel import metrics
from nextra.kernel.errors import ConfigurationError, NextraError
from nextra.kernel.logging import get_logger
from nextra.kernel.settings import Settings
from nextra.readmodels.checkpoints import read_checkpoints
from nextra.readmodels.database import check_database, create_engine, migration_status
from nextra.readmodels.projection import ProjectionSpec, load_catalogue

__all__ = ("Platform", "connect_nats")

log = get_logger("nextra.platform")


async def connect_nats(url: str, *, timeout: float, name: str = "nextra") -> NatsClient:
    """Connect, check the server can do what Nextra needs, and stay reconnecting.

    Raises:
        ConfigurationError: The server cannot be reached within ``timeout``, or
            is older than 2.12, or has JetStream off.
    """

    last_error: list[str] = []

    async def on_error(error: Exception) -> None:
        # Before the first connection succeeds the failure is reported once, below.
        if last_error and last_error[0] == "connected":
            log.warning("nats.error", error=str(error) or type(error).__name__)
        else:
            last_error[:] = [str(error) or type(error).__name__]

    async def on_disconnected() -> None:
        log.info("nats.disconnected")

    async def on_reconnected() -> None:
        log.info("nats.reconnected")

    shown = url.split("@")[-1]
    try:
        nc = await asyncio.wait_for(
            nats.connect(
                servers=[url],
                name=name,
                connect_timeout=min(timeout, 2.0),
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                error_cb=on_error,
                disconnected_cb=on_disconnected,
                reconnected_cb=on_reconnected,
            ),
            timeout,
        )
    except (TimeoutError, OSError, nats.errors.Error) as error:
        reason = str(error) or (last_error[0] if last_error else "timed out")
        message = f"cannot reach NATS at {shown} within {timeout}s: {reason}"
        raise ConfigurationError(message, where="NEXTRA_NATS_URL") from None
    last_error[:] = ["connected"]

    version = nc.connected_server_version
    if (version.major, version.minor, version.patch) < MIN_VERSION:
        await nc.close()
        message = (
            f"NATS at {shown} is version {version.major}.{version.minor}."
            f"{version.patch}; Nextra needs 2.12 or newer (atomic batches)"
        )
        raise ConfigurationError(
            message, expected=">= 2.12.0", got=str(version), where="NEXTRA_NATS_URL"
        )
    try:
        await nc.jetstream().account_info()
    except Exception as error:  # noqa: BLE001 - any failure here means "no JetStream"
        await nc.close()
        message = (
            f"NATS at {shown} does not offer JetStream ({error}); start it with -js"
        )
        raise ConfigurationError(message, where="NEXTRA_NATS_URL") from None
    return nc


@dataclass
class Platform:
    """Everything a Nextra process shares: connections, store, catalogue."""

    settings: Settings
    nc: NatsClient
    engine: AsyncEngine
    store: JetStreamEventStore
    streams: list[StreamDefinition]
    projections: list[ProjectionSpec]
    runs_store: JetStreamEventStore
    _closed: bool = field(default=False, repr=False)

    @classmethod
    async def connect(cls, settings: Settings, *, name: str = "nextra") -> Platform:
        if not settings.nats_url:
            message = (
                "NEXTRA_NATS_URL is not set (only `nextra dev` starts servers itself)"
            )
            raise ConfigurationError(message, where="NEXTRA_NATS_URL")
        if not settings.database_url:
            message = "NEXTRA_DATABASE_URL is not set (only `nextra dev` starts servers itself)"
            raise ConfigurationError(message, where="NEXTRA_DATABASE_URL")

        streams = load_stream_definitions(settings.streams_path)
        projections = load_catalogue(settings.projections_path)
        engine = create_engine(settings.database_url)
        try:
            await check_database(engine, timeout=settings.connect_timeout)
            nc = await connect_nats(
                settings.nats_url, timeout=settings.connect_timeout, name=name
            )
        except BaseException:
            await engine.dispose()
            raise
        store = JetStreamEventStore(
            nc, REGISTRY, stream=DEFAULT_STREAM, timeout=settings.append_timeout
        )
        runs_store = JetStreamEventStore(
            nc, REGISTRY, stream=RUNS_STREAM, timeout=settings.append_timeout
        )
        return cls(settings, nc, engine, store, streams, projections, runs_store)

    def store_for(self, subject: str) -> JetStreamEventStore:
        """The store whose stream holds ``subject`` (a projection's filter)."""
        return self.runs_store if subject.startswith(RUNS_PREFIX) else self.store

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.nc.is_closed:
            await self.nc.drain()
        await self.engine.dispose()

    async def readiness(self) -> dict[str, str | None]:
        """Each readiness check: ``None`` when it passes, else what is wrong."""
        checks: dict[str, str | None] = {}
        checks["nats"] = None if self.nc.is_connected else "not connected"
        try:
            changes = await asyncio.wait_for(
                plan_streams(self.nc.jetstream(), self.streams), 2.0
            )
            pending = [c.stream for c in changes if c.action != "none"]
            checks["streams"] = (
                f"not applied: {', '.join(pending)} (run `nextra streams apply`)"
                if pending
                else None
            )
        except (TimeoutError, NextraError, nats.errors.Error) as error:
            checks["streams"] = f"cannot check: {error or 'timed out'}"
        try:
            current, head = await asyncio.wait_for(migration_status(self.engine), 2.0)
            checks["postgres"] = None
            checks["migrations"] = (
                None
                if current == head
                else f"database at {current or 'no revision'}, code at {head} "
                "(run `nextra db upgrade`)"
            )
        except Exception as error:  # noqa: BLE001 - any failure means "not ready"
            checks["postgres"] = f"unreachable: {error or type(error).__name__}"
            checks["migrations"] = "cannot check without Postgres"
        return checks

    async def projection_lags(self) -> dict[str, dict[str, Any]]:
        """Per projection: version, checkpoint, newest matching event, lag."""
        async with self.engine.connect() as connection:
            checkpoints = await read_checkpoints(connection)
        lags: dict[str, dict[str, Any]] = {}
        for spec in self.projections:
            newest = await self.store_for(spec.subject).last_sequence(spec.subject)
            checkpoint = checkpoints.get(spec.name)
            at = checkpoint.last_sequence if checkpoint else 0
            lags[spec.name] = {
                "version": spec.version,
                "stored_version": checkpoint.version if checkpoint else None,
                "checkpoint": at,
                "newest": newest,
                "lag": max(newest - at, 0),
            }
        return lags

    async def refresh_metrics(self) -> None:
        try:
            lags = await self.projection_lags()
        except Exception as error:  # noqa: BLE001 - a scrape must not fail on this
            log.warning("metrics.projection_lag_unavailable", error=str(error))
            return
        for name, lag in lags.items():
            metrics.PROJECTION_LAG.labels(projection=name).set(lag["lag"])

    def api_context(self) -> ApiContext:
        settings = self.settings
        validate = partial(validate_organism, policy=self.handler_policy())
        sessions = None
        if settings.clerk_jwks_url and settings.clerk_issuer:
            sessions = JwksVerifier(
                settings.clerk_jwks_url,
                issuer=settings.clerk_issuer,
                audience=settings.clerk_audience,
                authorized_parties=settings.clerk_authorized_parties or None,
            )
        webhooks = None
        if settings.clerk_webhook_secret:
            webhooks = SvixVerifier(settings.clerk_webhook_secret)
        return ApiContext(
            readiness=self.readiness,
            refresh_metrics=self.refresh_metrics,
            engine=self.engine,
            flows=FlowCommands(self.store, validate),
            tenants=TenantCommands(self.store),
            sessions=sessions,
            clerk_webhooks=webhooks,
            # TODO(#3): a JetStream KV guard, so replays are refused across
            # API processes and restarts; this one is per process.
            replay_guard=InMemoryReplayGuard() if webhooks else None,
            read_your_writes_timeout=settings.read_your_writes_timeout,
            nats=self.nc,
            runs_store=self.runs_store,
            runs=self.run_commands(FlowQueues(self.nc, self.runs_store)),
            tenant_cache=TenantCache(ttl=settings.auth_cache_seconds),
        )

    def run_commands(self, queues: FlowQueues) -> RunCommands:
        """Run commands wired to this deployment's stores, policy and queues."""
        settings = self.settings
        load = partial(load_organism, policy=self.handler_policy())
        organisms = Organisms(self.store, load)

        async def prepare(tenant_id: str, flow_id: str, in_flight: int) -> None:
            # One delivery more than workers allow, so that a worker sees the
            # last one and fails the run as poison before the server gives up.
            limits = QueueSettings(
                max_in_flight=in_flight,
                ack_wait=settings.worker_ack_wait,
                max_deliver=settings.worker_max_deliver + 1,
            )
            await queues.ensure(tenant_id, flow_id, limits)

        async def announce(tenant_id: str, flow_id: str, tier: Tier) -> None:
            await self.nc.publish(wake_subject(tenant_id, flow_id), tier.encode())

        return RunCommands(
            self.runs_store, organisms, prepare=prepare, on_triggered=announce
        )

    def handler_policy(self) -> HandlerPolicy:
        """Which handlers flows may name here: Python only under trusted prefixes."""
        return HandlerPolicy(
            trusted_python_prefixes=self.settings.trusted_handler_modules
        )
