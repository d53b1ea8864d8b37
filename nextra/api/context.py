"""What the API needs from the running platform, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.api.tenant_cache import TenantCache
from nextra.app.flows import FlowCommands
from nextra.app.runs import RunCommands
from nextra.app.tenants import TenantCommands
from nextra.auth.jwt import JwksVerifier
from nextra.auth.svix import ReplayGuard, SvixVerifier
from nextra.eventstore.jetstream import JetStreamEventStore

__all__ = ("ApiContext", "Readiness")

Readiness = Callable[[], Awaitable[dict[str, str | None]]]
"""Check name to ``None`` when it passes, or what is wrong."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiContext:
    """Everything the routes use; built once per process.

    Attributes:
        sessions: Verifies Clerk session tokens; ``None`` when the deployment
            authenticates with API keys only.
        clerk_webhooks: Verifies Clerk's Svix-signed webhooks; ``None`` turns the
            webhook route off.
        read_your_writes_timeout: How long a write waits for its read model
            before answering.
        nats: The NATS connection, for live feeds over WebSockets.
        runs_store: The store of run events (``NX_RUNS``).
        runs: Triggers and cancels runs; ``None`` turns those routes off.
        tenant_cache: Verified callers and tiers, kept for a few seconds.
    """

    readiness: Readiness
    refresh_metrics: Callable[[], Awaitable[None]]
    engine: AsyncEngine
    flows: FlowCommands
    tenants: TenantCommands
    sessions: JwksVerifier | None = None
    clerk_webhooks: SvixVerifier | None = None
    replay_guard: ReplayGuard | None = None
    read_your_writes_timeout: float = 5.0
    nats: NatsClient | None = None
    runs_store: JetStreamEventStore | None = None
    runs: RunCommands | None = None
    tenant_cache: TenantCache = field(default_factory=TenantCache)
