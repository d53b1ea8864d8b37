"""A1: the durability settings of streams and server, and the ids on every append."""

from __future__ import annotations

import asyncio
import json
import urllib.request
from pathlib import Path

import pytest
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js.api import StorageType

from nextra.app.tenants import TenantCommands
from nextra.devstack.nats import MIN_VERSION, EmbeddedNats
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.tenants import TenantCreated, TenantRenamed, TenantTierChanged
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import ALL_EVENTS
from nextra.eventstore.topology import (
    StreamDefinition,
    apply_streams,
    load_stream_definitions,
)
from nextra.kernel.ids import new_id
from nextra.kernel.settings import project_root

MIN_DUPLICATE_WINDOW = 120.0  # seconds; retries within it are dropped by the server


def definitions() -> list[StreamDefinition]:
    return load_stream_definitions(project_root() / "streams")


@pytest.mark.parametrize("definition", definitions(), ids=lambda d: d.name)
def test_stream_definition_asks_for_durable_settings(
    definition: StreamDefinition,
) -> None:
    settings = definition.settings()

    assert settings["storage"] == "file"
    assert settings["duplicate_window"] >= MIN_DUPLICATE_WINDOW
    assert settings["allow_atomic"] is True
    assert settings["allow_direct"] is True
    assert settings["deny_delete"] is True


async def test_every_stream_on_the_server_matches_its_definition_after_apply(
    nc: NatsClient, events_stream: str
) -> None:
    js = nc.jetstream()

    changes = await apply_streams(js, definitions())

    assert {change.stream: change.action for change in changes} == {
        definition.name: "none" for definition in definitions()
    }
    for definition in definitions():
        config = (await js.stream_info(definition.name)).config
        wanted = definition.to_config()
        assert config.storage == StorageType.FILE
        assert sorted(config.subjects or []) == sorted(definition.subjects)
        assert config.duplicate_window == wanted.duplicate_window
        assert (config.duplicate_window or 0) >= MIN_DUPLICATE_WINDOW
        assert config.retention == wanted.retention
        assert config.discard == wanted.discard
        assert config.num_replicas == wanted.num_replicas
        assert config.max_msg_size == wanted.max_msg_size
        assert (config.max_age or 0) == wanted.max_age
        if definition.max_consumers is not None:
            assert config.max_consumers == definition.max_consumers
        assert bool(config.allow_atomic) is definition.allow_atomic
        assert bool(config.allow_direct) is definition.allow_direct
        assert bool(config.deny_delete) is definition.deny_delete
        assert bool(config.deny_purge) is definition.deny_purge


async def test_server_is_not_older_than_the_pinned_minimum(nc: NatsClient) -> None:
    version = nc.connected_server_version

    assert (version.major, version.minor, version.patch) >= MIN_VERSION


def varz(server: EmbeddedNats) -> dict[str, object]:
    with urllib.request.urlopen(f"{server.monitor_url}/varz", timeout=5) as response:
        document: dict[str, object] = json.load(response)
    return document


def test_embedded_server_syncs_every_write_to_disk(tmp_path: Path) -> None:
    """``sync_interval: always``: an acknowledged event survives a power cut, not
    only a process crash. The monitor reports it as ``sync_always``."""
    with EmbeddedNats(tmp_path / "nats") as server:
        document = varz(server)

    jetstream = document["jetstream"]
    assert isinstance(jetstream, dict)
    assert jetstream["config"]["sync_always"] is True
    assert "sync_interval: always" in (tmp_path / "nats" / "nats.conf").read_text()
    version = str(document["version"]).split("-")[0]
    assert tuple(int(part) for part in version.split(".")) >= MIN_VERSION


def tenant() -> AggregateRef:
    tenant_id = new_id()
    return AggregateRef(tenant_id, "tenant", tenant_id)


async def test_every_message_the_store_publishes_or_stores_carries_its_ids(
    nc: NatsClient, store: JetStreamEventStore
) -> None:
    """Watches the wire (a core subscription on the events subjects) while every
    kind of append runs, then reads back everything stored."""
    published: list[Msg] = []

    async def capture(msg: Msg) -> None:
        published.append(msg)

    watcher = await nc.subscribe(ALL_EVENTS, cb=capture)
    await nc.flush()
    first, second = tenant(), tenant()
    created = await store.append(
        first, [TenantCreated(name="A")], expected_version=0, context=CommandContext()
    )
    context = CommandContext()
    batch = [
        TenantRenamed(name="B"),
        TenantTierChanged(tier="pro"),
        TenantRenamed(name="C"),
    ]
    await store.append(first, batch, expected_version=created.version, context=context)
    await store.append(first, batch, expected_version=created.version, context=context)
    await store.append(
        second,
        [TenantCreated(name="D"), TenantRenamed(name="E")],
        expected_version=None,
        context=CommandContext(),
    )
    await store.append(
        second,
        [TenantRenamed(name="F")],
        expected_version=None,
        context=CommandContext(),
    )
    commands = TenantCommands(store)
    created_id = new_id()
    await commands.create(created_id, "G", context=CommandContext(actor="cli"))
    await commands.change_tier(created_id, "paid", context=CommandContext())
    await nc.flush()
    await asyncio.sleep(0.1)
    await watcher.unsubscribe()

    js = nc.jetstream()
    last = (await js.stream_info(store.stream)).state.last_seq
    stored = [await js.get_msg(store.stream, seq) for seq in range(1, last + 1)]

    assert len(published) >= last == 9
    for headers in [m.headers or {} for m in published] + [
        m.headers or {} for m in stored
    ]:
        command_id = headers.get("Nx-Command-Id")
        assert command_id, headers
        assert headers.get("Nats-Msg-Id", "").split(":")[0] == command_id, headers
    stored_ids = [(m.headers or {})["Nats-Msg-Id"] for m in stored]
    assert len(set(stored_ids)) == len(stored_ids)
