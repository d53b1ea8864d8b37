"""Payload field types as written in ``payloads:``: parsing ``list[str] | None``."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Final

from nextra.domain.flows.model import TypeRef

__all__ = (
    "FIELD_NAME",
    "TYPE_NAME",
    "TypeExpressionError",
    "named_refs",
    "parse_type_expression",
)

TYPE_NAME = re.compile(r"[A-Z][A-Za-z0-9]*")
"""A payload type name: PascalCase, letter first."""
FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
"""A payload field name: an identifier."""


class TypeExpressionError(ValueError):
    """A payload field's type expression cannot be parsed."""


_TOKEN = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*)|(?P<punct>[\[\],|]))")
_PRIMITIVE_TYPES: Final[Mapping[str, TypeRef]] = {
    "str": TypeRef(kind="str"),
    "int": TypeRef(kind="int"),
    "float": TypeRef(kind="float"),
    "bool": TypeRef(kind="bool"),
}
_TYPO_HINTS: Final[Mapping[str, str]] = {
    "string": "str",
    "text": "str",
    "integer": "int",
    "number": "float",
    "boolean": "bool",
    "List": "list[T]",
    "Dict": "dict[str, T]",
    "Optional": "T | None",
    "Union": "T | None",
    "Any": "a declared payload type",
}
_MAX_TYPE_DEPTH = 16


def parse_type_expression(text: str) -> TypeRef:
    """Parse a field type: ``str``, ``int``, ``float``, ``bool``, ``list[T]``,
    ``dict[str, T]``, ``T | None`` or a payload type's name.

    Args:
        text: The expression as written in ``payloads:``.

    Returns:
        The parsed type. Named types are not looked up here.

    Raises:
        TypeExpressionError: The expression is malformed; the message says why.
    """
    tokens: list[str] = []
    position = 0
    stripped = text.rstrip()
    while position < len(stripped):
        match = _TOKEN.match(stripped, position)
        if match is None:
            bad = stripped[position:].lstrip()[:1]
            msg = f"unexpected character {bad!r}"
            raise TypeExpressionError(msg)
        tokens.append(match.group("name") or match.group("punct"))
        position = match.end()
    if not tokens:
        msg = "the type is empty"
        raise TypeExpressionError(msg)
    parser = _TypeParser(tokens)
    ref = parser.union(0)
    if parser.index < len(tokens):
        msg = f"unexpected {tokens[parser.index]!r} after {str(ref)!r}"
        raise TypeExpressionError(msg)
    return ref


class _TypeParser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.index = 0

    def _peek(self) -> str | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _take(self, expected: str | None = None) -> str:
        token = self._peek()
        if token is None or (expected is not None and token != expected):
            wanted = "a type" if expected is None else repr(expected)
            found = "the end" if token is None else repr(token)
            msg = f"expected {wanted} but found {found}"
            raise TypeExpressionError(msg)
        self.index += 1
        return token

    def union(self, depth: int) -> TypeRef:
        if depth > _MAX_TYPE_DEPTH:
            msg = f"types are nested more than {_MAX_TYPE_DEPTH} levels deep"
            raise TypeExpressionError(msg)
        parts = [self.term(depth)]
        while self._peek() == "|":
            self._take("|")
            parts.append(self.term(depth))
        if len(parts) == 1:
            if parts[0] is None:
                msg = "None alone is not a field type; write T | None"
                raise TypeExpressionError(msg)
            return parts[0]
        present = [part for part in parts if part is not None]
        if len(parts) == 2 and len(present) == 1:
            return TypeRef(kind="optional", item=present[0])
        msg = "the only union allowed is T | None (one type, then None)"
        raise TypeExpressionError(msg)

    def term(self, depth: int) -> TypeRef | None:
        name = self._take()
        if not FIELD_NAME.fullmatch(name):
            msg = f"expected a type but found {name!r}"
            raise TypeExpressionError(msg)
        if name == "None":
            return None
        if name == "list":
            self._take("[")
            item = self.union(depth + 1)
            self._take("]")
            return TypeRef(kind="list", item=item)
        if name == "dict":
            self._take("[")
            key = self.union(depth + 1)
            if key.kind != "str":
                msg = f"dictionary keys must be str, not {str(key)!r}"
                raise TypeExpressionError(msg)
            self._take(",")
            value = self.union(depth + 1)
            self._take("]")
            return TypeRef(kind="dict", item=value)
        if name in _TYPO_HINTS:
            msg = f"there is no type {name!r}; write {_TYPO_HINTS[name]}"
            raise TypeExpressionError(msg)
        if self._peek() == "[":
            msg = f"{name!r} takes no type arguments; only list[...] and dict[...] do"
            raise TypeExpressionError(msg)
        if name in _PRIMITIVE_TYPES:
            return _PRIMITIVE_TYPES[name]
        if not TYPE_NAME.fullmatch(name):
            msg = (
                f"there is no type {name!r}; the field types are str, int, float, "
                "bool, list[T], dict[str, T], T | None and PascalCase payload types"
            )
            raise TypeExpressionError(msg)
        return TypeRef(kind="named", name=name)


def named_refs(ref: TypeRef) -> Iterable[str]:
    """The payload type names an expression refers to, outermost first."""
    if ref.kind == "named" and ref.name is not None:
        yield ref.name
    if ref.item is not None:
        yield from named_refs(ref.item)
