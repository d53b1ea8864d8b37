"""xml-pipeline 0.4.0's HandlerResponse is understood by shape, without importing it."""

from __future__ import annotations

import pytest

from nextra.domain.flows import Listener, Organism
from nextra.domain.runs.contract import HandlerMetadata
from nextra.runtime.handlers import InvalidReturn, Reply, load_handler

STANDIN = "tests.runtime.handlers.xml_pipeline_standin"
META = HandlerMetadata(thread_id="thread-1", from_id="console")


async def run(handler: str) -> list[Reply]:
    listener = Listener(
        name="reader",
        payload_class=f"{STANDIN}.Reading",
        handler=f"{STANDIN}.{handler}",
        description="Reads.",
        handler_kind="python",
        payload_type="Reading",
        payload_source="python",
    )
    loaded = load_handler(listener, Organism(name="x"), trusted_prefixes=("tests.",))
    return await loaded.invoke({"code": "007"}, META)


async def test_a_forward_is_read_from_to() -> None:
    assert await run("forward") == [
        Reply(
            kind="forward", to="store", payload_type="Reading", payload={"code": "007"}
        )
    ]


async def test_a_respond_is_read_from_the_marker() -> None:
    assert await run("respond") == [
        Reply(
            kind="respond",
            to=None,
            payload_type="TextOutput",
            payload={"text": "007", "status": "ok"},
        )
    ]


async def test_a_list_of_them_fans_out() -> None:
    assert [reply.kind for reply in await run("fan_out")] == ["forward", "respond"]


async def test_an_empty_target_is_still_refused() -> None:
    with pytest.raises(InvalidReturn, match="without a target"):
        await run("forward_to_marker_class")
