"""``nextra dev``: the whole platform in one command, on embedded servers by default."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import httpx

from nextra.app.tenants import TenantCommands
from nextra.cli.admin import issue_owner_key
from nextra.cli.platform import Platform
from nextra.cli.processes import (
    check_port_free,
    run_api,
    run_projector_process,
    stop_on_signals,
)
from nextra.cli.worker import run_worker_process
from nextra.devstack.nats import EmbeddedNats
from nextra.devstack.postgres import EmbeddedPostgres, ensure_database
from nextra.events.envelope import CommandContext
from nextra.eventstore.topology import apply_streams
from nextra.kernel.errors import ConflictError
from nextra.kernel.logging import get_logger
from nextra.kernel.settings import Settings
from nextra.readmodels.checkpoints import wait_projected
from nextra.readmodels.database import upgrade_database

__all__ = ("run_dev",)

log = get_logger("nextra.dev")

DEMO_TENANT = "demo"


async def run_dev(settings: Settings) -> None:
    """Start servers (unless given), prepare them, run API, projector, worker."""
    data_dir = await asyncio.to_thread(Path(settings.data_dir).resolve)
    check_port_free(settings.api_host, settings.api_port)
    embedded_nats: EmbeddedNats | None = None
    embedded_postgres: EmbeddedPostgres | None = None
    stopping = asyncio.Event()
    stop_on_signals(stopping)

    try:
        nats_url = settings.nats_url
        if nats_url is None:
            embedded_nats = EmbeddedNats(data_dir / "nats")
            await asyncio.to_thread(embedded_nats.start)
            nats_url = embedded_nats.url
        database_url = settings.database_url
        if database_url is None:
            embedded_postgres = EmbeddedPostgres(data_dir / "postgres")
            await asyncio.to_thread(embedded_postgres.start)
            database_url = await ensure_database(embedded_postgres.url(), "nextra")
        settings = settings.with_servers(nats_url=nats_url, database_url=database_url)

        await upgrade_database(database_url)
        platform = await Platform.connect(settings, name="nextra-dev")
        try:
            await apply_streams(platform.nc.jetstream(), platform.streams)
            demo_key, stored_at = await _ensure_demo_tenant(platform)
            banner = _banner(
                settings, data_dir, embedded_nats, embedded_postgres, demo_key
            )
            announce = asyncio.create_task(
                _announce_when_usable(platform, banner, stored_at), name="announce"
            )
            tasks = [
                asyncio.create_task(run_api(platform, stopping), name="api"),
                asyncio.create_task(
                    run_projector_process(platform, stopping), name="projector"
                ),
                asyncio.create_task(
                    run_worker_process(platform, stopping), name="worker"
                ),
            ]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            announce.cancel()
            stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()  # type: ignore[misc]
        finally:
            await platform.close()
    finally:
        if embedded_nats is not None:
            embedded_nats.stop()
        if embedded_postgres is not None:
            embedded_postgres.stop()
        log.info("dev.stopped")


async def _ensure_demo_tenant(platform: Platform) -> tuple[str, int]:
    """Make sure the demo tenant exists; a fresh owner API key for it."""
    commands = TenantCommands(platform.store)
    with contextlib.suppress(ConflictError):
        await commands.create(
            DEMO_TENANT, "Demo", tier="free", context=CommandContext(actor="nextra-dev")
        )
    return await issue_owner_key(commands, DEMO_TENANT, "nextra dev")


def _shown(url: str | None) -> str:
    # A URL psql takes too, and never a password, even a local one.
    url = (url or "").replace("postgresql+asyncpg://", "postgresql://", 1)
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    credentials, _, location = rest.rpartition("@")
    return f"{scheme}://{credentials.split(':')[0]}@{location}"


def _banner(
    settings: Settings,
    data_dir: Path,
    embedded_nats: EmbeddedNats | None,
    embedded_postgres: EmbeddedPostgres | None,
    demo_key: str,
) -> str:
    api = _api_url(settings)
    lines = [
        "",
        f"  Nextra is up.   API  {api}   (ready: {api}/ready, docs: {api}/schema)",
        f"  NATS      {settings.nats_url}" + ("  (embedded)" if embedded_nats else ""),
        f"  Postgres  {_shown(settings.database_url)}"
        + ("  (embedded)" if embedded_postgres else ""),
        f"  Data      {data_dir}" if (embedded_nats or embedded_postgres) else "",
        f"  Demo tenant: {DEMO_TENANT}, API key (new this start): {demo_key}",
        f"    curl -H 'Authorization: Bearer {demo_key}' {api}/api/flows",
        "  Ctrl-C stops everything.",
        "",
    ]
    return "\n".join(line for line in lines if line) + "\n\n"


async def _announce_when_usable(platform: Platform, banner: str, key_at: int) -> None:
    """Print the banner once its ``curl`` line would work.

    That is once the API answers and the ``access`` projection knows the demo
    key; printed sooner, a newcomer's first request could be refused.
    """
    health = f"{_api_url(platform.settings)}/health"
    try:
        async with httpx.AsyncClient(timeout=1.0) as client:
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(health)).status_code == 200:
                        break
                await asyncio.sleep(0.1)
        await wait_projected(platform.engine, "access", key_at, timeout=60)
    except Exception as error:  # noqa: BLE001 - the banner holds the only key
        log.warning("dev.key_not_projected", error=str(error))
    sys.stdout.write(banner)
    sys.stdout.flush()


def _api_url(settings: Settings) -> str:
    # A server listening on every interface is reached on loopback.
    every_interface = ("0.0.0.0", "::")  # noqa: S104 - compared, not bound
    host = "127.0.0.1" if settings.api_host in every_interface else settings.api_host
    return f"http://{host}:{settings.api_port}"
