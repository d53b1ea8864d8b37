"""Connecting to the read-model database and keeping its schema current."""

from __future__ import annotations

import asyncio

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from nextra.kernel.errors import ConfigurationError
from nextra.kernel.settings import project_root

__all__ = (
    "alembic_config",
    "check_database",
    "create_engine",
    "migration_status",
    "upgrade_database",
)


_SESSION_SETTINGS = {
    # asyncpg prepares every statement, and after five runs Postgres may keep a
    # generic plan for the session's life. Planned while a read model is still
    # nearly empty, that plan can pick any index that starts with the same
    # column as the key: the runs projection's updates by key scanned every run
    # of the tenant (2 ms each at 20,000 runs, growing with the table) until an
    # ANALYZE replanned them. Migration 0005 took that index away from runs;
    # this keeps other tables from the same trap. A plan made for each
    # execution costs about a tenth of a millisecond and sees the table as it is.
    "plan_cache_mode": "force_custom_plan",
}


def create_engine(url: str, *, pool_size: int = 10) -> AsyncEngine:
    """An asyncpg engine for ``url`` (``postgres://`` or ``postgresql://``)."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            url = "postgresql+asyncpg://" + url.removeprefix(prefix)
    # Requests wait for read models with short polls; a pool that covers the
    # usual concurrency avoids opening a Postgres session per poll.
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=2 * pool_size,
        pool_pre_ping=True,
        connect_args={"server_settings": _SESSION_SETTINGS},
    )


def alembic_config(url: str | None = None) -> Config:
    config = Config(str(project_root() / "migrations" / "alembic.ini"))
    config.set_main_option("script_location", str(project_root() / "migrations"))
    if url is not None:
        config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


async def upgrade_database(url: str) -> None:
    """Apply every Alembic migration not yet applied."""
    # Alembic's env.py runs its own event loop: give it a thread of its own.
    await asyncio.to_thread(command.upgrade, alembic_config(url), "head")


async def migration_status(engine: AsyncEngine) -> tuple[str | None, str]:
    """The database's current revision and the newest one in ``migrations/``."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head() or ""
    async with engine.connect() as connection:
        current = await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )
    return current, head


async def check_database(engine: AsyncEngine, *, timeout: float) -> None:
    """Fail with a clear message if Postgres cannot be reached in ``timeout``."""
    try:
        async with asyncio.timeout(timeout), engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except (TimeoutError, OSError, Exception) as error:  # noqa: BLE001
        where = engine.url.render_as_string(hide_password=True)
        message = f"cannot reach PostgreSQL at {where}: {error}"
        raise ConfigurationError(message, where="NEXTRA_DATABASE_URL") from None
