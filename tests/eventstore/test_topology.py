"""Stream definitions: applied idempotently, diffed on dry runs, conflicts named."""

from __future__ import annotations

import contextlib
from pathlib import Path

import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from nextra.eventstore.topology import (
    StreamDefinition,
    apply_streams,
    load_stream_definitions,
    plan_streams,
)
from nextra.kernel.errors import ConfigurationError, StreamConflict


def definition(**overrides: object) -> StreamDefinition:
    fields: dict[str, object] = {
        "name": "NX_TEST_TOPOLOGY",
        "subjects": ["nx.test.topology.>"],
        "duplicate_window": "2m",
        "allow_direct": True,
        "source": "test_topology.toml",
    }
    fields.update(overrides)
    return StreamDefinition(**fields)  # type: ignore[arg-type]


@pytest.fixture
async def clean(nc: NatsClient) -> NatsClient:
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await nc.jetstream().delete_stream("NX_TEST_TOPOLOGY")
    return nc


async def test_apply_creates_then_reports_nothing_to_do(clean: NatsClient) -> None:
    js = clean.jetstream()

    first = await apply_streams(js, [definition()])
    second = await apply_streams(js, [definition()])

    assert [c.action for c in first] == ["create"]
    assert [c.action for c in second] == ["none"]
    info = await js.stream_info("NX_TEST_TOPOLOGY")
    assert info.config.duplicate_window == 120
    assert info.config.allow_direct


async def test_dry_run_shows_the_difference_and_changes_nothing(
    clean: NatsClient,
) -> None:
    js = clean.jetstream()
    await apply_streams(js, [definition()])

    changes = await apply_streams(js, [definition(duplicate_window="5m")], dry_run=True)

    assert changes[0].action == "update"
    assert changes[0].differences == {"duplicate_window": (120.0, 300.0)}
    assert (await js.stream_info("NX_TEST_TOPOLOGY")).config.duplicate_window == 120


async def test_update_applies_a_changeable_setting(clean: NatsClient) -> None:
    js = clean.jetstream()
    await apply_streams(js, [definition()])

    await apply_streams(js, [definition(duplicate_window="5m", description="changed")])

    config = (await js.stream_info("NX_TEST_TOPOLOGY")).config
    assert config.duplicate_window == 300
    assert config.description == "changed"


async def test_conflicting_immutable_setting_names_stream_and_setting(
    clean: NatsClient,
) -> None:
    js = clean.jetstream()
    await apply_streams(js, [definition()])

    with pytest.raises(StreamConflict) as caught:
        await plan_streams(js, [definition(storage="memory")])

    assert caught.value.where == "NX_TEST_TOPOLOGY.storage"
    assert "NX_TEST_TOPOLOGY" in caught.value.message
    assert "test_topology.toml" in caught.value.message


async def test_stream_taken_over_by_another_definition_is_refused(
    clean: NatsClient,
) -> None:
    js = clean.jetstream()
    await apply_streams(js, [definition()])

    with pytest.raises(StreamConflict, match="retention"):
        await apply_streams(js, [definition(retention="workqueue")])


def test_bad_definition_file_names_file_and_setting(tmp_path: Path) -> None:
    (tmp_path / "broken.toml").write_text(
        'name = "X"\nsubjects = ["x.>"]\nduplicate_window = "two minutes"\n'
    )

    with pytest.raises(ConfigurationError) as caught:
        load_stream_definitions(tmp_path)

    assert "broken.toml" in caught.value.message
    assert "two minutes" in caught.value.message


def test_unknown_setting_in_definition_is_refused(tmp_path: Path) -> None:
    (tmp_path / "typo.toml").write_text(
        'name = "X"\nsubjects = ["x.>"]\nstorrage = "file"\n'
    )

    with pytest.raises(ConfigurationError, match="storrage"):
        load_stream_definitions(tmp_path)


def test_shipped_definitions_parse(root: Path) -> None:
    definitions = load_stream_definitions(root / "streams")

    events = next(d for d in definitions if d.name == "NX_EVENTS")
    assert events.subjects == ["nx.ev.>"]
    assert events.allow_atomic and events.allow_direct and events.deny_delete
    assert events.storage == "file"
