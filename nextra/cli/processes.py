"""Running the API and the projector, alone or together, until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections.abc import Iterator

import uvicorn

from nextra.api.app import create_app
from nextra.cli.platform import Platform
from nextra.kernel.errors import ConfigurationError
from nextra.runtime.projector import run_projector

__all__ = ("check_port_free", "run_api", "run_projector_process", "stop_on_signals")


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: the process owns Ctrl-C."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def check_port_free(host: str, port: int) -> None:
    """Fail before starting anything if the API could not listen where asked."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as error:
            message = (
                f"the API cannot listen on {host}:{port} ({error.strerror}); "
                "choose another with --port or NEXTRA_API_PORT"
            )
            raise ConfigurationError(
                message, got=port, where="NEXTRA_API_PORT"
            ) from None


def stop_on_signals(stopping: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)


async def run_api(platform: Platform, stopping: asyncio.Event) -> None:
    settings = platform.settings
    config = uvicorn.Config(
        create_app(platform.api_context()),
        host=settings.api_host,
        port=settings.api_port,
        log_config=None,
        access_log=False,
        lifespan="on",
    )
    server = _Server(config)

    async def stop_when_asked() -> None:
        await stopping.wait()
        server.should_exit = True

    watcher = asyncio.create_task(stop_when_asked())
    try:
        await server.serve()
    finally:
        watcher.cancel()
    if not server.started:
        message = f"the API could not listen on {settings.api_host}:{settings.api_port}"
        raise OSError(message)


async def run_projector_process(platform: Platform, stopping: asyncio.Event) -> None:
    await run_projector(
        platform.projections,
        nc=platform.nc,
        store_for=platform.store_for,
        engine=platform.engine,
        stopping=stopping,
        batch_size=platform.settings.projector_batch_size,
    )
