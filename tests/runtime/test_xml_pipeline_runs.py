"""An organism written for xml-pipeline 0.4.0 runs unchanged on a Nextra worker."""

from __future__ import annotations

import pytest

from tests.runtime.conftest import Runtime

pytest.importorskip("xml_pipeline", reason="xml-pipeline is not installed")

HANDLERS = "tests.runtime.handlers.xml_pipeline_handlers"

FLOW = f"""\
organism:
  name: compatible
listeners:
  - name: greeter
    payload_class: xml_pipeline.primitives.TextInput
    handler: {HANDLERS}.greet
    description: Greets.
  - name: echo
    payload_class: {HANDLERS}.Reading
    handler: {HANDLERS}.echo
    description: Echoes readings.
"""


async def test_text_trigger_reaches_an_xml_pipeline_handler(runtime: Runtime) -> None:
    flow = await runtime.flow(FLOW)

    state = await runtime.run(flow, "hello", "TextInput")

    assert state.status == "completed"
    assert state.verdict is not None
    assert state.verdict.output is not None
    # The handler got xml-pipeline's own TextInput and answered with its
    # TextOutput, which is the run's output.
    assert state.verdict.output.payload_type == "TextOutput"
    assert state.verdict.output.payload["text"] == "xml-pipeline:hello"
