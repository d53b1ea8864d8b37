"""The parsed flow: an organism, its listeners, payload types and validation issues."""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, Literal

import msgspec

__all__ = (
    "ISSUE_CODES",
    "HandlerKind",
    "Issue",
    "Listener",
    "Organism",
    "PayloadField",
    "PayloadSource",
    "PayloadType",
    "Severity",
    "TypeKind",
    "TypeRef",
    "ValidationReport",
)

Severity = Literal["error", "warning"]
HandlerKind = Literal["builtin", "wasm", "python"]
"""Where a handler comes from: Nextra's catalogue, a WebAssembly module, or (only
in a self-hosted deployment that trusts it) a Python import path."""
PayloadSource = Literal["declared", "builtin", "wasm", "python"]
"""Where a payload type comes from: the flow's ``payloads:`` section, Nextra's
built-in types, a WebAssembly module's exports, or a trusted Python dataclass."""
TypeKind = Literal["str", "int", "float", "bool", "list", "dict", "optional", "named"]


class TypeRef(msgspec.Struct, frozen=True, kw_only=True):
    """A parsed field type expression such as ``list[str]`` or ``Address | None``.

    Attributes:
        kind: ``str``, ``int``, ``float``, ``bool``; ``list`` (``item`` is the
            element type); ``dict`` (text keys, ``item`` is the value type);
            ``optional`` (``item`` or nothing); ``named`` (a payload type called
            ``name``).
        item: The inner type of ``list``, ``dict`` and ``optional``.
        name: The payload type's name for ``named``.
    """

    kind: TypeKind
    item: TypeRef | None = None
    name: str | None = None

    def __str__(self) -> str:
        if self.kind == "named":
            return self.name or ""
        if self.kind == "list":
            return f"list[{self.item}]"
        if self.kind == "dict":
            return f"dict[str, {self.item}]"
        if self.kind == "optional":
            return f"{self.item} | None"
        return self.kind


class PayloadField(msgspec.Struct, frozen=True, kw_only=True):
    """One field of a payload type.

    Attributes:
        name: The field name as declared (``original_sender``); in XML it
            becomes the PascalCase element ``OriginalSender``.
        type: The parsed type; ``str(type)`` is its canonical spelling.
        line: Where the field was declared, when it came from YAML.
    """

    name: str
    type: TypeRef
    line: int | None = None


class PayloadType(msgspec.Struct, frozen=True, kw_only=True):
    """A payload type: a name and ordered fields, every field required.

    Attributes:
        name: The type's name (PascalCase), which is also the XML root element and
            the second half of a routing key.
        fields: The fields in declaration order (XML child order).
        source: Where the type is defined.
        line: Where a declared type's name was written.
    """

    name: str
    fields: tuple[PayloadField, ...] = ()
    source: PayloadSource = "declared"
    line: int | None = None


class Listener(msgspec.Struct, frozen=True, kw_only=True):
    """One ``listeners[]`` entry.

    Attributes:
        name: The listener's address, as written (routing ignores case).
        payload_class: The payload type reference as written.
        handler: The handler reference as written.
        description: Shown to agents in their peers' usage instructions.
        agent: Whether the listener is an agent (peers enforced, prompt used).
        peers: The listener names an agent may send to; empty means anywhere.
        prompt: An agent's system prompt.
        broadcast: Accepted for compatibility; it has no effect.
        timeout_seconds: The handler's timeout, if set (the tier caps it).
        extras: Keys xml-pipeline 0.4.0 knows but ignores (``model``,
            ``temperature``, ``allowed_tools``...), kept as written.
        line: Where the entry starts in the YAML text.
        handler_kind: Which kind of handler ``handler`` names.
        payload_type: The payload type's name, as used in routing keys.
        payload_source: Where that payload type is defined.
    """

    name: str
    payload_class: str
    handler: str
    description: str
    agent: bool = False
    peers: tuple[str, ...] = ()
    prompt: str = ""
    broadcast: bool = False
    timeout_seconds: float | None = None
    extras: dict[str, Any] = {}
    line: int | None = None
    handler_kind: HandlerKind = "builtin"
    payload_type: str = ""
    payload_source: PayloadSource = "declared"

    @property
    def routing_key(self) -> str:
        """``lower(name).lower(payload type)``, the key messages are routed by."""
        return f"{self.name.lower()}.{self.payload_type.lower()}"


class Organism(msgspec.Struct, frozen=True, kw_only=True):
    """A validated flow.

    Attributes:
        name: ``organism.name``.
        version: ``organism.version``, informational.
        description: ``organism.description``, informational.
        entry: The listener a trigger delivers to: the ``entry`` key (a Nextra
            extension) or else the first listener; ``None`` without listeners.
        listeners: The listener entries in file order (duplicates kept).
        payloads: The types declared in the ``payloads:`` section, in order.
        llm: The ``llm:`` router settings as plain data.
        thread_scheduling: Accepted for compatibility; it has no effect.
        max_concurrent_pipelines: Accepted for compatibility; it has no effect.
        max_concurrent_handlers: Cap on handlers running at once for the flow.
        max_concurrent_per_agent: Cap on one agent's concurrent invocations.
    """

    name: str
    version: str = "0.1.0"
    description: str = ""
    entry: str | None = None
    listeners: tuple[Listener, ...] = ()
    payloads: tuple[PayloadType, ...] = ()
    llm: dict[str, Any] = {}
    thread_scheduling: str = "breadth-first"
    max_concurrent_pipelines: int = 50
    max_concurrent_handlers: int = 20
    max_concurrent_per_agent: int = 5

    def payload(self, name: str) -> PayloadType | None:
        """The declared payload type called ``name``, if there is one."""
        return next((p for p in self.payloads if p.name == name), None)


_ERRORS = (
    # The YAML text itself (nextra.domain.flows.yamlsafe).
    "yaml-too-large",
    "yaml-invalid-character",
    "yaml-syntax",
    "yaml-anchor",
    "yaml-alias",
    "yaml-tag",
    "yaml-merge-key",
    "yaml-bad-scalar",
    "yaml-complex-key",
    "yaml-duplicate-key",
    "yaml-multiple-documents",
    "yaml-empty",
    "yaml-not-a-mapping",
    "yaml-too-deep",
    "yaml-too-many-nodes",
    # Shape and settings.
    "missing-organism-name",
    "invalid-name",
    "reserved-name",
    "invalid-type",
    "invalid-value",
    "conflicting-setting",
    "missing-field",
    "split-listeners",
    "unknown-entry",
    # Handlers.
    "unknown-builtin",
    "invalid-handler",
    "invalid-wasm-reference",
    "unknown-wasm-module",
    "colon-import-path",
    "python-not-allowed",
    "unresolved-import",
    "handler-not-async",
    # Payload types.
    "payload-not-dataclass",
    "unknown-payload-type",
    "invalid-payload-class",
    "invalid-type-name",
    "duplicate-payload-type",
    "invalid-field-name",
    "duplicate-field",
    "invalid-type-expression",
    "unknown-type-reference",
    "recursive-payload-type",
    # Peers.
    "peers-not-a-list",
    "invalid-peer",
    "typed-peer",
    # llm:
    "llm-unknown-provider",
    # The validator itself failed (a bug; reported instead of raised).
    "validator-failed",
)
_WARNINGS = (
    "unknown-key",
    "ignored-key",
    "ignored-value",
    "not-text",
    "no-listeners",
    "duplicate-listener",
    "dotted-name",
    "agent-without-prompt",
    "prompt-without-agent",
    "broadcast-no-effect",
    "unknown-peer",
    "llm-unknown-strategy",
    "llm-duplicate-backend",
    "llm-inline-secret",
    "too-many-issues",
)

ISSUE_CODES: MappingProxyType[str, Severity] = MappingProxyType(
    {
        **dict.fromkeys(_ERRORS, "error"),
        **dict.fromkeys(_WARNINGS, "warning"),
    }
)
"""Every code an ``Issue`` may carry, with its severity (docs/flows.md explains
each). Codes are stable: clients may match on them."""


class Issue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem found in a flow.

    Attributes:
        severity: ``error`` blocks saving and running; ``warning`` does not.
        code: A short stable kebab-case id (listed in docs/flows.md).
        message: One sentence: what was expected and what was found.
        line: Line of the offending key or value (from 1), when known.
        column: Column (from 1), when known.
        listener: The listener's name, when the issue is inside one.
        field: The key path, e.g. ``listeners[2].peers``, when there is one.
    """

    severity: Severity
    code: str
    message: str
    line: int | None = None
    column: int | None = None
    listener: str | None = None
    field: str | None = None


class ValidationReport(msgspec.Struct, frozen=True, kw_only=True):
    """What validating a flow found.

    Attributes:
        organism: The parsed flow, present only when there are no errors.
        errors: Issues that make the flow invalid, in source order.
        warnings: Issues worth showing that do not block, in source order.
    """

    organism: Organism | None
    errors: tuple[Issue, ...] = ()
    warnings: tuple[Issue, ...] = ()

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings may remain)."""
        return not self.errors

    @property
    def issues(self) -> tuple[Issue, ...]:
        """Errors and warnings together, in source order."""
        return tuple(sorted((*self.errors, *self.warnings), key=_source_order))


def _source_order(issue: Issue) -> tuple[int, int, int]:
    return (
        issue.line if issue.line is not None else 0,
        issue.column if issue.column is not None else 0,
        0 if issue.severity == "error" else 1,
    )
