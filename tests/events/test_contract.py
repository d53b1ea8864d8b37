"""The event contract: stable names, versioned shapes, upcasting on read."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar

import pytest

from nextra.events import Event, EventRegistry
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.schema import event_schema, render_event_docs, schema_files
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.errors import EventContractError
from nextra.kernel.ids import new_id


def test_every_event_shape_is_recorded_under_its_version(root: Path) -> None:
    """A stored shape may not change without a new schema version.

    docs/events/ holds the schema of every (type, version) ever released. If the
    Struct of a released version changes, this fails: raise schema_version, add
    an upcaster, and run `nextra events docs`.
    """
    recorded = root / "docs" / "events"
    for name, text in schema_files(REGISTRY).items():
        path = recorded / name
        assert path.exists(), f"{name} is not recorded: run `nextra events docs`"
        assert json.loads(path.read_text()) == json.loads(text), (
            f"the shape of {name} changed without a new schema_version; raise it, "
            "register an upcaster from the old version, and run `nextra events docs`"
        )


def test_released_types_are_never_dropped_and_old_versions_upcast(root: Path) -> None:
    """Every recorded (type, version) is still readable by the current code."""
    for path in sorted((root / "docs" / "events").glob("*.json")):
        type_name, _, version_text = path.stem.rpartition(".v")
        version = int(version_text)
        event_type = REGISTRY.resolve(type_name)
        assert version <= event_type.schema_version
        for step in range(version, event_type.schema_version):
            assert REGISTRY.has_upcaster(type_name, step), (
                f"{type_name} v{step} is recorded but has no upcaster to v{step + 1}"
            )


def test_events_page_is_current(root: Path) -> None:
    page = (root / "docs" / "events.md").read_text()

    assert page == render_event_docs(REGISTRY), "run `nextra events docs`"


def test_type_names_are_unique_and_never_reused() -> None:
    class First(Event, frozen=True, kw_only=True):
        type_name: ClassVar[str] = "test.same"

    class Second(Event, frozen=True, kw_only=True):
        type_name: ClassVar[str] = "test.same"

    with pytest.raises(EventContractError, match="already used"):
        EventRegistry([First, Second])


def test_registered_catalogue_has_unique_names() -> None:
    names = [t.type_name for t in REGISTRY.types()]

    assert len(names) == len(set(names))
    assert all(name.islower() and "." in name for name in names)


class NoteV1(Event, frozen=True, kw_only=True):
    """Version 1: the text only."""

    type_name: ClassVar[str] = "test.note_added"
    text: str


class NoteV2(Event, frozen=True, kw_only=True):
    """Version 2: the text was split into title and body."""

    type_name: ClassVar[str] = "test.note_added"
    schema_version: ClassVar[int] = 2
    title: str
    body: str


def _v2_registry() -> EventRegistry:
    registry = EventRegistry([NoteV2])

    @registry.upcaster("test.note_added", from_version=1)
    def split_text(shape: dict[str, Any]) -> dict[str, Any]:
        title, _, body = shape.pop("text").partition("\n")
        return {**shape, "title": title, "body": body}

    return registry


async def test_old_event_versions_are_upcast_when_read(
    store: JetStreamEventStore, nc: Any
) -> None:
    old_writer = JetStreamEventStore(nc, EventRegistry([NoteV1]), stream=store.stream)
    new_reader = JetStreamEventStore(nc, _v2_registry(), stream=store.stream)
    aggregate = AggregateRef(new_id(), "note", new_id())

    await old_writer.append(
        aggregate,
        [NoteV1(text="Hello\nworld")],
        expected_version=0,
        context=CommandContext(),
    )
    [recorded] = await new_reader.load(aggregate)

    assert recorded.event == NoteV2(title="Hello", body="world")
    assert recorded.schema_version == 1


def test_newer_version_than_known_is_refused_clearly() -> None:
    registry = EventRegistry([NoteV1])

    with pytest.raises(EventContractError, match="newer code"):
        registry.decode("test.note_added", 2, b'{"title": "a", "body": "b"}')


def test_missing_upcaster_is_named() -> None:
    registry = EventRegistry([NoteV2])

    with pytest.raises(
        EventContractError, match=r"no upcaster for test\.note_added from v1"
    ):
        registry.decode("test.note_added", 1, b'{"text": "a"}')


def test_unknown_fields_from_newer_writers_are_ignored() -> None:
    registry = EventRegistry([NoteV1])

    event = registry.decode("test.note_added", 1, b'{"text": "a", "added_later": 1}')

    assert event == NoteV1(text="a")


def test_unknown_type_is_refused_by_name() -> None:
    with pytest.raises(EventContractError, match=r"test\.never"):
        REGISTRY.decode("test.never", 1, b"{}")


def test_schema_names_type_and_version() -> None:
    schema = event_schema(NoteV2)

    assert schema["$id"] == "urn:nextra:event:test.note_added:v2"
    assert sorted(schema["required"]) == ["body", "title"]
