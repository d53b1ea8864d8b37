"""Parse untrusted YAML into plain data, with the position of every key and value.

Tenants write flows in YAML, so the parser must not build objects, expand aliases
or read files. This module drives PyYAML's event parser (libyaml when it is
installed) and composes the document itself, refusing anything that is not plain
data:

* documents over a size cap (256 KiB by default), nested deeper than 64 levels or
  with more than 10,000 nodes;
* anchors and aliases (a "billion laughs" document expands a few hundred bytes
  into gigabytes once something copies it);
* every tag other than the standard ``str``, ``int``, ``float``, ``bool``,
  ``null``, ``seq`` and ``map`` (so ``!!python/object/apply`` never gets near a
  constructor), and merge keys (``<<``);
* duplicate keys in one mapping, keys that are lists or mappings;
* several documents in one stream, an empty document, a top level that is not a
  mapping; control characters (NUL among them).

Unquoted dates stay text (YAML 1.1 would make them ``datetime`` objects, which no
flow setting wants); every other scalar means what ``yaml.safe_load`` makes of it.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    CollectionStartEvent,
    Event,
    MappingEndEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import Resolver
from yaml.scanner import Scanner

from nextra.kernel.errors import ValidationError

__all__ = (
    "DEFAULT_LIMITS",
    "Key",
    "Mark",
    "Path",
    "YamlDocument",
    "YamlLimits",
    "YamlRefused",
    "parse_yaml",
)

Key = str | int | float | bool | None
"""A mapping key as YAML reads it: keys are scalars, usually text."""

Path = tuple[Key, ...]
"""Where a value sits: mapping keys and list indexes from the top, e.g.
``("listeners", 2, "peers")``."""

_TAG = "tag:yaml.org,2002:"
_STR, _INT, _FLOAT, _BOOL, _NULL = (
    f"{_TAG}str",
    f"{_TAG}int",
    f"{_TAG}float",
    f"{_TAG}bool",
    f"{_TAG}null",
)
_SEQ, _MAP, _MERGE = f"{_TAG}seq", f"{_TAG}map", f"{_TAG}merge"
_SCALAR_TAGS = frozenset({_STR, _INT, _FLOAT, _BOOL, _NULL})

# The characters PyYAML's own reader refuses, checked up front so that the error
# names the line and column whichever parser runs.
_NON_PRINTABLE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\x85\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]"
)


class Mark(msgspec.Struct, frozen=True):
    """A position in the source text, both numbers counted from 1."""

    line: int
    column: int


class YamlLimits(msgspec.Struct, frozen=True, kw_only=True):
    """How much YAML a tenant may send.

    Args:
        max_bytes: Size cap of the text, encoded as UTF-8.
        max_depth: How deeply lists and mappings may nest.
        max_nodes: How many scalars, lists and mappings the document may hold.
    """

    max_bytes: int = 256 * 1024
    max_depth: int = 64
    max_nodes: int = 10_000


DEFAULT_LIMITS = YamlLimits()


class YamlRefused(ValidationError):
    """The text is not YAML Nextra accepts; ``reason`` says which rule it broke.

    Args:
        message: One sentence saying what was expected and what was found.
        reason: A short kebab-case code, e.g. ``yaml-alias``.
        mark: Where in the text, when known.
    """

    code = "yaml-refused"

    def __init__(self, message: str, *, reason: str, mark: Mark | None = None) -> None:
        where = None if mark is None else f"line {mark.line}, column {mark.column}"
        super().__init__(message, where=where)
        self.reason = reason
        self.mark = mark


class YamlDocument(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed document: its data and where each part of it was written.

    Attributes:
        data: The top-level mapping as plain Python data (dict, list, str, int,
            float, bool, None).
        values: The start of each value, by path. The top level has path ``()``.
        keys: The start of each mapping key, by the path of its value.
    """

    data: dict[Key, Any]
    values: dict[Path, Mark]
    keys: dict[Path, Mark]

    def value_mark(self, path: Path) -> Mark | None:
        """Where the value at ``path`` starts, or where its closest parent does."""
        return self._nearest(path, prefer_key=False)

    def key_mark(self, path: Path) -> Mark | None:
        """Where the key of the value at ``path`` starts, else as ``value_mark``."""
        return self._nearest(path, prefer_key=True)

    def _nearest(self, path: Path, *, prefer_key: bool) -> Mark | None:
        while True:
            if prefer_key and path in self.keys:
                return self.keys[path]
            if path in self.values:
                return self.values[path]
            if not path:
                return None
            path = path[:-1]


class _Resolver(Resolver):
    """YAML 1.1 implicit typing as ``safe_load`` does it, minus timestamps and ``=``."""

    yaml_implicit_resolvers = {
        first: [
            (tag, regexp)
            for tag, regexp in resolvers
            if tag not in {f"{_TAG}timestamp", f"{_TAG}value"}
        ]
        for first, resolvers in Resolver.yaml_implicit_resolvers.items()
    }


class _PyEvents(Reader, Scanner, Parser):
    """PyYAML's pure-Python event parser, used when libyaml is not installed."""

    def __init__(self, text: str) -> None:
        Reader.__init__(self, text)
        Scanner.__init__(self)
        Parser.__init__(self)


try:
    from yaml._yaml import CParser
except ImportError:  # PyYAML built without libyaml
    _USE_LIBYAML = False
else:
    _USE_LIBYAML = True


def _event_parser(text: str) -> Any:
    if _USE_LIBYAML:
        return CParser(text)
    return _PyEvents(text)


def _mark(yaml_mark: Any) -> Mark:
    return Mark(line=yaml_mark.line + 1, column=yaml_mark.column + 1)


def _mark_at(text: str, index: int) -> Mark:
    line = text.count("\n", 0, index) + 1
    column = index - (text.rfind("\n", 0, index) + 1) + 1
    return Mark(line=line, column=column)


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _describe_top(value: Any) -> str:
    if isinstance(value, list):
        return "a list"
    if isinstance(value, str):
        return f"the text {_shorten(value)!r}"
    return f"the value {value!r}"


def _kib(size: int) -> str:
    return f"{size / 1024:.1f} KiB ({size} bytes)"


class _Composer:
    """Turns parser events into plain data, recording marks and enforcing limits."""

    def __init__(self, text: str, limits: YamlLimits) -> None:
        self._events = _event_parser(text)
        self._limits = limits
        self._resolver = _Resolver()
        self._constructor = SafeConstructor()
        self._depth = 0
        self._nodes = 0
        self.values: dict[Path, Mark] = {}
        self.keys: dict[Path, Mark] = {}

    def document(self) -> Any:
        """The single document's data, or ``None`` for an empty stream."""
        events = self._events
        events.get_event()  # StreamStart
        if events.check_event(StreamEndEvent):
            return None
        events.get_event()  # DocumentStart
        data = self._node(())
        events.get_event()  # DocumentEnd
        if not events.check_event(StreamEndEvent):
            extra = events.peek_event()
            msg = (
                "the text holds more than one YAML document (a second one starts "
                f"at line {_mark(extra.start_mark).line}); an organism.yaml is one "
                "document, so remove the '---' separator and what follows it"
            )
            raise YamlRefused(
                msg, reason="yaml-multiple-documents", mark=_mark(extra.start_mark)
            )
        return data

    def _node(self, path: Path) -> Any:
        event = self._events.peek_event()
        mark = self._count(event)
        self.values[path] = mark
        if isinstance(event, ScalarEvent):
            self._events.get_event()
            return self._scalar(event, mark)
        self._depth += 1
        if self._depth > self._limits.max_depth:
            msg = (
                f"lists and mappings are nested more than "
                f"{self._limits.max_depth} levels deep"
            )
            raise YamlRefused(msg, reason="yaml-too-deep", mark=mark)
        try:
            if isinstance(event, SequenceStartEvent):
                return self._sequence(event, path)
            return self._mapping(event, path)
        finally:
            self._depth -= 1

    def _count(self, event: Event) -> Mark:
        """Refuse aliases and anchors, count the node, and return its mark."""
        mark = _mark(event.start_mark)
        if isinstance(event, AliasEvent):
            msg = (
                f"aliases are not allowed (found *{event.anchor}): they let a small "
                "document expand into a huge one; write the value out in full"
            )
            raise YamlRefused(msg, reason="yaml-alias", mark=mark)
        if isinstance(event, NodeEvent) and event.anchor is not None:
            msg = (
                f"anchors are not allowed (found &{event.anchor}): aliases to them "
                "let a small document expand into a huge one (a 'billion laughs' "
                "attack); write each value out in full"
            )
            raise YamlRefused(msg, reason="yaml-anchor", mark=mark)
        if not isinstance(event, ScalarEvent | CollectionStartEvent):
            # The parser emits nothing else where a node is expected.
            msg = f"unexpected YAML event {type(event).__name__}"
            raise YamlRefused(msg, reason="yaml-syntax", mark=mark)
        self._nodes += 1
        if self._nodes > self._limits.max_nodes:
            msg = (
                f"the document has more than {self._limits.max_nodes} values "
                "(scalars, lists and mappings); split the flow or simplify it"
            )
            raise YamlRefused(msg, reason="yaml-too-many-nodes", mark=mark)
        return mark

    def _check_tag(self, event: Event, tag: str, allowed: frozenset[str]) -> None:
        if tag in allowed:
            return
        mark = _mark(event.start_mark)
        if tag == _MERGE:
            msg = (
                "merge keys ('<<') are not allowed; write the merged keys out in "
                "full (quote it as '<<' if you meant the text)"
            )
            raise YamlRefused(msg, reason="yaml-merge-key", mark=mark)
        shown = tag.replace(_TAG, "!!", 1) if tag.startswith(_TAG) else tag
        msg = (
            f"the tag {shown} is not allowed; only plain text, numbers, booleans, "
            "null, lists and mappings may appear in a flow"
        )
        raise YamlRefused(msg, reason="yaml-tag", mark=mark)

    def _scalar(self, event: ScalarEvent, mark: Mark) -> Any:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(ScalarNode, event.value, event.implicit)  # type: ignore[no-untyped-call]
        self._check_tag(event, tag, _SCALAR_TAGS)
        if tag == _STR:
            return event.value
        node = ScalarNode(tag, event.value, None, None)
        try:
            return self._constructor.yaml_constructors[tag](self._constructor, node)
        except (ValueError, KeyError, TypeError, yaml.YAMLError):
            kind = tag.removeprefix(_TAG)
            msg = f"the value {_shorten(event.value)!r} is not a valid {kind}"
            raise YamlRefused(msg, reason="yaml-bad-scalar", mark=mark) from None

    def _collection_tag(self, event: Any, kind: type[Any], default: str) -> None:
        tag = event.tag
        if tag is None or tag == "!":
            tag = self._resolver.resolve(kind, None, event.implicit)  # type: ignore[no-untyped-call]
        self._check_tag(event, tag, frozenset({default}))

    def _sequence(self, event: SequenceStartEvent, path: Path) -> Any:
        self._collection_tag(event, SequenceNode, _SEQ)
        self._events.get_event()
        items: list[Any] = []
        while not self._events.check_event(SequenceEndEvent):
            items.append(self._node((*path, len(items))))
        self._events.get_event()
        return items

    def _mapping(self, event: MappingStartEvent, path: Path) -> Any:
        self._collection_tag(event, MappingNode, _MAP)
        self._events.get_event()
        mapping: dict[Key, Any] = {}
        while not self._events.check_event(MappingEndEvent):
            key_event = self._events.get_event()
            key_mark = self._count(key_event)
            if not isinstance(key_event, ScalarEvent):
                msg = "a mapping key must be plain text, not a list or a mapping"
                raise YamlRefused(msg, reason="yaml-complex-key", mark=key_mark)
            key = self._scalar(key_event, key_mark)
            if key in mapping:
                first = self.keys[(*path, key)]
                msg = (
                    f"the key {key!r} appears twice in the same mapping, on line "
                    f"{first.line} and on line {key_mark.line}; YAML would keep only "
                    "the last one, so remove or rename one of them"
                )
                raise YamlRefused(msg, reason="yaml-duplicate-key", mark=key_mark)
            self.keys[(*path, key)] = key_mark
            mapping[key] = self._node((*path, key))
        self._events.get_event()
        return mapping


def parse_yaml(text: str, *, limits: YamlLimits = DEFAULT_LIMITS) -> YamlDocument:
    """Parse one YAML document that must be a mapping, refusing anything unsafe.

    Reads nothing but ``text``: no file paths, includes or tags are followed.

    Args:
        text: The YAML source.
        limits: Size, nesting and node caps.

    Returns:
        The data with the position of every key and value.

    Raises:
        YamlRefused: The text breaks a rule; ``reason`` names it and ``mark``
            says where.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limits.max_bytes:
        msg = (
            f"the document is {_kib(size)}, over the limit of {_kib(limits.max_bytes)}"
        )
        raise YamlRefused(msg, reason="yaml-too-large", mark=None)
    bad = _NON_PRINTABLE.search(text)
    if bad is not None:
        msg = (
            f"the character U+{ord(bad.group()):04X} is not allowed in YAML "
            "(control characters, NUL and lone surrogates are refused)"
        )
        raise YamlRefused(
            msg, reason="yaml-invalid-character", mark=_mark_at(text, bad.start())
        )
    composer = _Composer(text, limits)
    try:
        data = composer.document()
    except yaml.MarkedYAMLError as error:
        raise _syntax_error(error) from None
    except yaml.YAMLError as error:  # reader errors carry no mark
        msg = f"the text is not valid YAML: {error}"
        raise YamlRefused(msg, reason="yaml-syntax", mark=None) from None
    if data is None:
        msg = (
            "the document is empty; an organism.yaml must be a YAML mapping with at "
            "least 'organism:' and 'listeners:'"
        )
        raise YamlRefused(msg, reason="yaml-empty", mark=Mark(line=1, column=1))
    if not isinstance(data, dict):
        msg = (
            "an organism.yaml must be a YAML mapping with 'organism:' and "
            f"'listeners:' at the top level; found {_describe_top(data)}"
        )
        raise YamlRefused(
            msg, reason="yaml-not-a-mapping", mark=composer.values.get(())
        )
    return YamlDocument(data=data, values=composer.values, keys=composer.keys)


def _syntax_error(error: yaml.MarkedYAMLError) -> YamlRefused:
    yaml_mark = error.problem_mark or error.context_mark
    mark = None if yaml_mark is None else _mark(yaml_mark)
    problem = error.problem or "the text is not valid YAML"
    message = f"the text is not valid YAML: {problem}"
    if error.context:
        context_mark = error.context_mark
        at = "" if context_mark is None else f" (line {_mark(context_mark).line})"
        message += f", {error.context}{at}"
    return YamlRefused(message, reason="yaml-syntax", mark=mark)
