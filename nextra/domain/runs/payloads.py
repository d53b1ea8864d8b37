"""Checking JSON-shaped payloads against their payload types, and measuring them."""

from __future__ import annotations

import math
from typing import Any, Final

import msgspec

from nextra.domain.flows.catalogue import BUILTIN_PAYLOADS
from nextra.domain.flows.model import Organism, PayloadType, TypeRef
from nextra.kernel.errors import ValidationError

__all__ = (
    "PayloadInvalid",
    "payload_size",
    "resolve_payload_type",
    "validate_payload",
)

_ENCODER: Final = msgspec.json.Encoder()
_SHOWN_CHARS = 40  # how much of a wrong value an error message quotes


class PayloadInvalid(ValidationError):
    """A payload does not fit its payload type.

    The message names the type and the field path (``Pair.a: expected int, got
    str 'one'``); ``where`` is the field path alone (``a``, ``items[2].qty``), or
    ``None`` when the payload as a whole is wrong.
    """

    code = "payload-invalid"


def resolve_payload_type(name: str, organism: Organism | None) -> PayloadType | None:
    """The payload type called ``name``: declared in the flow first, then built in."""
    declared = organism.payload(name) if organism is not None else None
    return declared if declared is not None else BUILTIN_PAYLOADS.get(name)


def validate_payload(
    data: object, payload_type: PayloadType, organism: Organism | None
) -> dict[str, Any]:
    """Check ``data`` against ``payload_type`` and return a normalised copy.

    Every field is required and no other field is allowed. ``bool`` is not
    accepted for ``int`` or ``float``; ``int`` is accepted for ``float`` and
    becomes a float. Strings are returned exactly as given. The copy lists the
    fields in declaration order, which is the order of the XML elements.

    Types defined by a Python dataclass or a WebAssembly module carry no field
    list in the flow, so only their shape (an object with text keys) is checked
    here; their own loader checks the fields when the handler receives them.

    Args:
        data: The decoded JSON value.
        payload_type: The type it must fit.
        organism: The flow, for the types named by fields (``None`` when only
            built-in types may be named).

    Returns:
        The checked payload as a new dict.

    Raises:
        PayloadInvalid: ``data`` does not fit; the first problem found is named.
    """
    return _Checker(payload_type.name, organism).payload(data, payload_type, "")


def payload_size(data: Any) -> int:
    """The size in bytes of ``data`` as compact JSON, as it is stored in events."""
    return len(_ENCODER.encode(data))


class _Checker:
    def __init__(self, root: str, organism: Organism | None) -> None:
        self.root = root
        self.organism = organism

    def error(
        self, path: str, problem: str, *, expected: Any, got: Any
    ) -> PayloadInvalid:
        place = f"{self.root}.{path}" if path else self.root
        msg = f"{place}: {problem}"
        return PayloadInvalid(msg, expected=expected, got=got, where=path or None)

    def payload(
        self, data: object, payload_type: PayloadType, path: str
    ) -> dict[str, Any]:
        if not isinstance(data, dict):
            raise self.error(
                path,
                f"expected an object of type {payload_type.name}, got {_shown(data)}",
                expected=payload_type.name,
                got=_kind(data),
            )
        for key in data:
            if not isinstance(key, str):
                raise self.error(
                    path,
                    f"field names must be text, got {_shown(key)}",
                    expected="str",
                    got=_kind(key),
                )
        if payload_type.source in ("python", "wasm"):
            return dict(data)
        result: dict[str, Any] = {}
        for field in payload_type.fields:
            inner = _join(path, field.name)
            if field.name not in data:
                raise self.error(inner, "missing", expected=str(field.type), got=None)
            result[field.name] = self.value(data[field.name], field.type, inner)
        known = {field.name for field in payload_type.fields}
        for key in data:
            if key not in known:
                names = ", ".join(sorted(known)) or "no fields"
                raise self.error(
                    _join(path, key),
                    f"unexpected field ({payload_type.name} has {names})",
                    expected=sorted(known),
                    got=key,
                )
        return result

    def value(
        self, data: object, ref: TypeRef, path: str, shown: TypeRef | None = None
    ) -> Any:
        kind = ref.kind
        if kind == "optional":
            if data is None:
                return None
            return self.value(data, _item(ref), path, shown=ref)
        if kind == "named":
            return self.named(data, ref.name or "", path)
        if kind == "str" and isinstance(data, str):
            return data
        if kind == "bool" and isinstance(data, bool):
            return data
        # bool is a subclass of int in Python, never a number in a payload.
        if kind == "int" and isinstance(data, int) and not isinstance(data, bool):
            return data
        if (
            kind == "float"
            and isinstance(data, int | float)
            and not isinstance(data, bool)
        ):
            number = float(data)
            # JSON has no NaN or infinity: msgspec would store them as null.
            if not math.isfinite(number):
                raise self.error(
                    path,
                    f"expected a finite float, got {number!r}",
                    expected="float",
                    got=repr(number),
                )
            return number
        if kind == "list" and isinstance(data, list | tuple):
            item = _item(ref)
            return [
                self.value(element, item, f"{path}[{index}]")
                for index, element in enumerate(data)
            ]
        if kind == "dict" and isinstance(data, dict):
            item = _item(ref)
            checked: dict[str, Any] = {}
            for key, element in data.items():
                inner = f"{path}[{key!r}]"
                if not isinstance(key, str):
                    raise self.error(
                        inner,
                        f"keys must be text, got {_shown(key)}",
                        expected="str",
                        got=_kind(key),
                    )
                checked[key] = self.value(element, item, inner)
            return checked
        # An optional field names its whole type: 'expected str | None'.
        expected = shown or ref
        raise self.error(
            path,
            f"expected {expected}, got {_shown(data)}",
            expected=str(expected),
            got=_kind(data),
        )

    def named(self, data: object, name: str, path: str) -> dict[str, Any]:
        payload_type = resolve_payload_type(name, self.organism)
        if payload_type is None:
            raise self.error(
                path,
                f"its type {name!r} is neither declared in the flow nor built in",
                expected=name,
                got=None,
            )
        return self.payload(data, payload_type, path)


def _item(ref: TypeRef) -> TypeRef:
    if ref.item is None:
        msg = f"type {ref.kind} has no element type"
        raise ValueError(msg)
    return ref.item


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def _kind(value: object) -> str:
    return "None" if value is None else type(value).__name__


def _shown(value: object) -> str:
    if value is None:
        return "None"
    text = repr(value)
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    if isinstance(value, str | int | float):
        return f"{type(value).__name__} {text}"
    return type(value).__name__
