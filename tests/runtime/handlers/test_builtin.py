"""Built-in handlers: echo and output respond unchanged; the rest arrive later."""

from __future__ import annotations

import pytest

from nextra.domain.flows import Listener, Organism, load_organism
from nextra.domain.flows.catalogue import BUILTIN_HANDLERS
from nextra.domain.runs.contract import HandlerMetadata
from nextra.runtime.handlers import (
    HandlerLoadFailed,
    HandlerUnavailable,
    Reply,
    load_handler,
)

META = HandlerMetadata(thread_id="thread-1", from_id="user:ada")

FLOW = """\
organism:
  name: builtins
payloads:
  Note:
    text: str
listeners:
  - name: echo
    payload_class: Note
    handler: builtin:echo
    description: Echoes.
  - name: out
    payload_class: TextOutput
    handler: builtin:output
    description: The flow's result.
  - name: calc
    payload_class: wasm:calc/Expression
    handler: wasm:calc
    description: Evaluates arithmetic.
"""


@pytest.fixture(scope="module")
def organism() -> Organism:
    return load_organism(FLOW)


def listener_named(organism: Organism, name: str) -> Listener:
    return next(entry for entry in organism.listeners if entry.name == name)


@pytest.mark.parametrize(
    ("name", "payload_type", "payload"),
    [
        ("echo", "Note", {"text": "007"}),
        ("out", "TextOutput", {"text": "true", "status": "ok"}),
    ],
)
async def test_echo_and_output_respond_with_the_payload_unchanged(
    organism: Organism, name: str, payload_type: str, payload: dict[str, str]
) -> None:
    handler = load_handler(
        listener_named(organism, name), organism, trusted_prefixes=()
    )
    replies = await handler.invoke(payload, META)
    assert replies == [
        Reply(kind="respond", to=None, payload_type=payload_type, payload=payload)
    ]
    assert replies[0].payload is not payload


@pytest.mark.parametrize("kind", sorted(set(BUILTIN_HANDLERS) - {"echo", "output"}))
def test_other_built_ins_arrive_in_a_later_version(kind: str) -> None:
    listener = Listener(
        name="step",
        payload_class="TextInput",
        handler=f"builtin:{kind}",
        description="A built-in.",
        handler_kind="builtin",
        payload_type="TextInput",
        payload_source="builtin",
    )
    with pytest.raises(
        HandlerUnavailable, match="arrives in a later version"
    ) as caught:
        load_handler(listener, Organism(name="x"), trusted_prefixes=())
    assert caught.value.got == f"builtin:{kind}"
    assert caught.value.code == "handler-unavailable"


def test_webassembly_handlers_arrive_in_a_later_version(organism: Organism) -> None:
    listener = listener_named(organism, "calc")
    with pytest.raises(HandlerUnavailable, match="WebAssembly handlers"):
        load_handler(listener, organism, trusted_prefixes=("tests.",))


def test_a_name_outside_the_catalogue_does_not_load() -> None:
    listener = Listener(
        name="step",
        payload_class="TextInput",
        handler="builtin:teleport",
        description="Not a built-in.",
        handler_kind="builtin",
        payload_type="TextInput",
        payload_source="builtin",
    )
    with pytest.raises(HandlerLoadFailed, match="'builtin:teleport' is not a built-in"):
        load_handler(listener, Organism(name="x"), trusted_prefixes=())
