"""A stand-in for xml-pipeline 0.4.0's HandlerResponse, shaped as the real one is.

In 0.4.0 (``xml_pipeline.message_bus.message_state``) it is a plain dataclass of
``payload`` and ``to``; ``respond()`` puts a module-level marker object in
``to``, and ``is_response`` is a property testing for that marker. These tests
run whether or not xml-pipeline is installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from nextra.sdk import HandlerMetadata, TextOutput, payload


class _Marker:
    """Means "back to whoever called", as xml-pipeline's private marker does."""


BACK_TO_CALLER = _Marker()


@dataclass
class HandlerResponse:
    payload: Any
    to: str | _Marker

    @classmethod
    def respond(cls, payload: Any) -> HandlerResponse:
        return cls(payload=payload, to=BACK_TO_CALLER)

    @property
    def is_response(self) -> bool:
        return isinstance(self.to, _Marker)


@payload
class Reading:
    code: str


async def forward(payload: Reading, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse(payload=payload, to="store")


async def respond(payload: Reading, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(TextOutput(text=payload.code))


async def fan_out(payload: Reading, metadata: HandlerMetadata) -> list[HandlerResponse]:
    return [
        HandlerResponse(payload=payload, to="store"),
        HandlerResponse.respond(payload),
    ]


async def forward_to_marker_class(payload: Reading, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(payload=payload, to="")
