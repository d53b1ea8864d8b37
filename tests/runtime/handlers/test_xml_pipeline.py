"""Handlers written for the real xml-pipeline 0.4.0 run unchanged (skipped without it)."""

from __future__ import annotations

from typing import Any

import pytest

from nextra.domain.flows import HandlerPolicy, Organism, load_organism
from nextra.domain.runs.contract import HandlerMetadata
from nextra.runtime.handlers import Reply, load_handler

pytest.importorskip("xml_pipeline", reason="xml-pipeline is not installed")

HANDLERS = "tests.runtime.handlers.xml_pipeline_handlers"
TRUSTED = ("tests.",)
META = HandlerMetadata(thread_id="thread-1", from_id="console")

FLOW = f"""\
organism:
  name: compatible
listeners:
  - name: echo
    payload_class: {HANDLERS}.Reading
    handler: {HANDLERS}.echo
    description: Echoes readings.
  - name: store
    payload_class: {HANDLERS}.Reading
    handler: {HANDLERS}.store
    description: Forwards readings.
  - name: fan
    payload_class: {HANDLERS}.Reading
    handler: {HANDLERS}.fan_out
    description: Forwards and responds.
  - name: greeter
    payload_class: xml_pipeline.primitives.TextInput
    handler: {HANDLERS}.greet
    description: Greets.
"""
READING = {"code": "007", "flag": "true", "amount": "1.50", "number": "NaN"}


@pytest.fixture(scope="module")
def organism() -> Organism:
    return load_organism(FLOW, policy=HandlerPolicy(trusted_python_prefixes=TRUSTED))


async def run(organism: Organism, name: str, payload: dict[str, Any]) -> list[Reply]:
    listener = next(entry for entry in organism.listeners if entry.name == name)
    handler = load_handler(listener, organism, trusted_prefixes=TRUSTED)
    return await handler.invoke(payload, META)


async def test_xmlify_classes_get_strings_verbatim(organism: Organism) -> None:
    # xml-pipeline itself turns these into "7", "True", "1.5" and "nan".
    assert await run(organism, "echo", READING) == [
        Reply(kind="respond", to=None, payload_type="Reading", payload=READING)
    ]


async def test_its_forward_is_a_forward(organism: Organism) -> None:
    (reply,) = await run(organism, "store", READING)
    assert (reply.kind, reply.to, reply.payload_type) == ("forward", "store", "Reading")


async def test_its_responses_fan_out_from_a_list(organism: Organism) -> None:
    replies = await run(organism, "fan", READING)
    assert [(r.kind, r.to, r.payload_type) for r in replies] == [
        ("forward", "store", "Reading"),
        ("respond", None, "TextOutput"),
    ]
    assert replies[1].payload == {"text": "007", "status": "ok"}


async def test_its_own_text_input_arrives_for_its_import_path(
    organism: Organism,
) -> None:
    payload = {"text": "Ada", "source": "api", "user": ""}
    (reply,) = await run(organism, "greeter", payload)
    assert reply.payload == {"text": "xml-pipeline:Ada", "status": "ok"}
