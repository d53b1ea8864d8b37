"""A running platform for API tests: real NATS, Postgres, projector and HTTP."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from nextra.api import create_app
from nextra.auth.api_keys import generate_api_key
from nextra.cli.platform import Platform
from nextra.cli.worker import run_worker_process
from nextra.events.envelope import CommandContext
from nextra.events.tenants import Tier
from nextra.kernel.ids import new_id
from nextra.kernel.settings import Settings, load_settings
from nextra.readmodels.checkpoints import wait_projected
from nextra.runtime.projector import run_projector
from tests.support.http import serve


@dataclass
class Caller:
    """One tenant's API key, ready to use."""

    tenant_id: str
    headers: dict[str, str]


@dataclass
class Running:
    platform: Platform
    http: httpx.AsyncClient

    async def tenant(self, tier: Tier = "pro") -> Caller:
        """A new tenant with an owner API key, usable once projected."""
        tenant_id = new_id()
        commands = self.platform.api_context().tenants
        await commands.create(tenant_id, "Tenant", tier=tier, context=CommandContext())
        key = generate_api_key()
        result = await commands.create_api_key(
            tenant_id,
            key_id=key.prefix,
            key_hash=key.hash,
            name="tests",
            role="owner",
            context=CommandContext(),
        )
        assert result is not None
        await wait_projected(
            self.platform.engine, "access", result.last_sequence, timeout=10
        )
        return Caller(tenant_id, {"Authorization": f"Bearer {key.secret}"})


@contextlib.asynccontextmanager
async def platform_running(
    settings: Settings, *, worker: bool = True
) -> AsyncIterator[Running]:
    """The API, the projector and a worker of one platform, in this event loop."""
    platform = await Platform.connect(settings)
    stopping = asyncio.Event()
    pump = asyncio.create_task(
        run_worker_process(platform, stopping) if worker else stopping.wait()
    )
    projector = asyncio.create_task(
        run_projector(
            platform.projections,
            nc=platform.nc,
            store_for=platform.store_for,
            engine=platform.engine,
            stopping=stopping,
        )
    )
    try:
        async with serve(create_app(platform.api_context())) as http:
            yield Running(platform, http)
    finally:
        stopping.set()
        await asyncio.wait_for(projector, 10)
        await asyncio.wait_for(pump, 10)
        await platform.close()


def platform_settings(nats_url: str, database_url: str, **overrides: Any) -> Settings:
    """The settings API tests run the platform with, plus ``overrides``."""
    return load_settings(
        {},
        nats_url=nats_url,
        database_url=database_url,
        read_your_writes_timeout=10,
        trusted_handler_modules=("tests.",),
        worker_ack_wait=5,
        **overrides,
    )


@pytest.fixture
async def running(
    nats_url: str, database_url: str, events_stream: str
) -> AsyncIterator[Running]:
    async with platform_running(platform_settings(nats_url, database_url)) as running:
        yield running
