"""Handlers written against the real xml-pipeline 0.4.0, as its users write them."""

# No ``from __future__ import annotations``: xml-pipeline's @xmlify reads the
# field types as classes, as its own primitives note.

from dataclasses import dataclass
from typing import Any

from third_party.xmlable import xmlify
from xml_pipeline.message_bus.message_state import HandlerResponse
from xml_pipeline.primitives.text_input import TextInput, TextOutput


@xmlify
@dataclass
class Reading:
    code: str
    flag: str
    amount: str
    number: str


async def echo(payload: Reading, metadata: Any) -> HandlerResponse:
    return HandlerResponse.respond(payload)


async def store(payload: Reading, metadata: Any) -> HandlerResponse:
    return HandlerResponse(payload=payload, to="store")


async def greet(payload: TextInput, metadata: Any) -> HandlerResponse:
    # Handlers for xml-pipeline may rely on its own class arriving.
    kind = "xml-pipeline" if isinstance(payload, TextInput) else "other"
    return HandlerResponse.respond(TextOutput(text=f"{kind}:{payload.text}"))


async def fan_out(payload: Reading, metadata: Any) -> list[HandlerResponse]:
    return [
        HandlerResponse(payload=payload, to="store"),
        HandlerResponse.respond(TextOutput(text=payload.code)),
    ]
