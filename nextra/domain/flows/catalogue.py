"""What a flow may name without defining it: built-in handlers and payload types."""

from __future__ import annotations

from types import MappingProxyType

import msgspec

from nextra.domain.flows.model import PayloadField, PayloadType, TypeRef

__all__ = (
    "BUILTIN_HANDLERS",
    "BUILTIN_PAYLOADS",
    "PAYLOAD_ALIASES",
    "BuiltinHandler",
)


class BuiltinHandler(msgspec.Struct, frozen=True, kw_only=True):
    """A listener Nextra ships, named in YAML as ``handler: builtin:<kind>``.

    Attributes:
        kind: The name after ``builtin:``.
        summary: What it does, in one sentence (shown by the CLI and the docs).
        canvas_node: The canvas node type that produces it.
    """

    kind: str
    summary: str
    canvas_node: str


_HANDLERS = (
    BuiltinHandler(
        kind="llm",
        summary=(
            "Calls the flow's LLM router with the listener's prompt and the "
            "payload, and forwards or responds with what the model returns."
        ),
        canvas_node="LLM Call",
    ),
    BuiltinHandler(
        kind="http",
        summary=(
            "Makes an HTTP request through the platform's egress rules and "
            "responds with the result."
        ),
        canvas_node="HTTP Request",
    ),
    BuiltinHandler(
        kind="branch",
        summary="Forwards the payload unchanged to one of its peers by a condition.",
        canvas_node="Conditional",
    ),
    BuiltinHandler(
        kind="transform",
        summary="Maps the payload's fields onto another payload type and forwards it.",
        canvas_node="Transform",
    ),
    BuiltinHandler(
        kind="output",
        summary=(
            "Responds with the payload; when that reaches the trigger it is the "
            "run's output."
        ),
        canvas_node="Output",
    ),
    BuiltinHandler(
        kind="loop",
        summary=(
            "Forwards to itself until a condition holds, then responds once to "
            "the original caller."
        ),
        canvas_node="Loop",
    ),
    BuiltinHandler(
        kind="echo",
        summary="Responds with its input unchanged (for trying flows out).",
        canvas_node="Echo",
    ),
)

BUILTIN_HANDLERS: MappingProxyType[str, BuiltinHandler] = MappingProxyType(
    {handler.kind: handler for handler in _HANDLERS}
)
"""The built-in handler catalogue by kind. Custom code is not built in: it runs as
a WebAssembly module (``handler: wasm:<module>``)."""

_STR = TypeRef(kind="str")
_TEXT_MAP = TypeRef(kind="dict", item=_STR)


def _builtin(name: str, *fields: tuple[str, TypeRef]) -> PayloadType:
    return PayloadType(
        name=name,
        fields=tuple(PayloadField(name=field, type=ref) for field, ref in fields),
        source="builtin",
    )


_PAYLOADS = (
    # The three types of xml-pipeline 0.4.0, with its field names and order.
    _builtin("TextInput", ("text", _STR), ("source", _STR), ("user", _STR)),
    _builtin("TextOutput", ("text", _STR), ("status", _STR)),
    _builtin(
        "SystemError",
        ("code", _STR),
        ("message", _STR),
        ("retry_allowed", TypeRef(kind="bool")),
    ),
    # What builtin:http takes and gives.
    _builtin(
        "HttpRequest",
        ("method", _STR),
        ("url", _STR),
        ("headers", _TEXT_MAP),
        ("body", _STR),
    ),
    _builtin(
        "HttpResponse",
        ("status", TypeRef(kind="int")),
        ("headers", _TEXT_MAP),
        ("body", _STR),
    ),
)

BUILTIN_PAYLOADS: MappingProxyType[str, PayloadType] = MappingProxyType(
    {payload.name: payload for payload in _PAYLOADS}
)
"""Payload types every flow may use without declaring them, by name."""

PAYLOAD_ALIASES: MappingProxyType[str, str] = MappingProxyType(
    {
        "xml_pipeline.primitives.TextInput": "TextInput",
        "xml_pipeline.primitives.text_input.TextInput": "TextInput",
        "xml_pipeline.primitives.TextOutput": "TextOutput",
        "xml_pipeline.primitives.text_input.TextOutput": "TextOutput",
        "xml_pipeline.message_bus.message_state.SystemError": "SystemError",
    }
)
"""xml-pipeline 0.4.0's import paths of its own types, accepted under any policy
as the built-in types of the same name."""
