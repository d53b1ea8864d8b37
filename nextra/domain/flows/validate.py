"""One validator for organism.yaml, shared by the API, the CLI and the runtime.

``validate_organism`` accepts every file xml-pipeline 0.4.0's runtime loader
accepts, with the same meaning, except where Nextra decided otherwise
(docs/flows.md lists the differences), and turns every problem into an
``Issue`` naming the line, the listener and the field. It never raises for bad
input.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import itertools
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final

import msgspec

from nextra.domain.flows.catalogue import (
    BUILTIN_HANDLERS,
    BUILTIN_PAYLOADS,
    PAYLOAD_ALIASES,
)
from nextra.domain.flows.model import (
    HandlerKind,
    Issue,
    Listener,
    Organism,
    PayloadField,
    PayloadSource,
    PayloadType,
    Severity,
    ValidationReport,
)
from nextra.domain.flows.typeexpr import (
    FIELD_NAME,
    TYPE_NAME,
    TypeExpressionError,
    named_refs,
    parse_type_expression,
)
from nextra.domain.flows.yamlsafe import (
    Key,
    Mark,
    Path,
    YamlDocument,
    YamlRefused,
    parse_yaml,
)
from nextra.kernel.errors import ValidationError

__all__ = (
    "HOSTED",
    "FlowInvalid",
    "HandlerPolicy",
    "WasmModule",
    "WasmResolver",
    "load_organism",
    "validate_organism",
)


class WasmModule(msgspec.Struct, frozen=True, kw_only=True):
    """What a deployment knows about a WebAssembly module a flow names.

    Attributes:
        name: The module's name.
        version: The version asked for, if any.
        types: The payload types the module exports, or ``None`` when not known
            (then any PascalCase type name is accepted).
    """

    name: str
    version: str | None = None
    types: frozenset[str] | None = None


WasmResolver = Callable[[str, str | None], WasmModule | None]
"""Looks up ``(module name, version or None)``; ``None`` means no such module."""


class HandlerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """Which handler and payload references a deployment may load.

    Attributes:
        trusted_python_prefixes: Module prefixes (``acme.flows``) whose Python
            handlers and dataclasses may be imported. Empty in the hosted
            service, which never runs tenant Python.
        resolve_wasm: Looks up WebAssembly modules. ``None`` accepts every
            syntactically valid module name.
    """

    trusted_python_prefixes: tuple[str, ...] = ()
    resolve_wasm: WasmResolver | None = None

    def trusts(self, dotted_path: str) -> bool:
        """Whether ``dotted_path`` lies under one of the trusted prefixes."""
        for prefix in self.trusted_python_prefixes:
            prefix = prefix.rstrip(".")
            if prefix and (
                dotted_path == prefix or dotted_path.startswith(prefix + ".")
            ):
                return True
        return False


HOSTED: Final = HandlerPolicy()
"""The hosted service's policy: built-ins and WebAssembly only, no Python."""


class FlowInvalid(ValidationError):
    """A flow has errors; ``report`` holds all of them.

    Args:
        report: The validation report with at least one error.
    """

    code = "flow-invalid"

    def __init__(self, report: ValidationReport) -> None:
        first = report.errors[0]
        where = None if first.line is None else f"line {first.line}"
        count = len(report.errors)
        message = (
            first.message if count == 1 else f"{first.message} (and {count - 1} more)"
        )
        super().__init__(message, where=where)
        self.report = report


def validate_organism(text: str, *, policy: HandlerPolicy = HOSTED) -> ValidationReport:
    """Parse and check an organism.yaml.

    Reads nothing but ``text``, except that under a policy with trusted Python
    prefixes it imports the trusted handler and payload modules to check them.

    Args:
        text: The YAML source.
        policy: Which handlers may be loaded; the hosted policy by default.

    Returns:
        The organism (when there are no errors), the errors and the warnings.
    """
    try:
        document = parse_yaml(text)
    except YamlRefused as refused:
        mark = refused.mark
        issue = Issue(
            severity="error",
            code=refused.reason,
            message=_sentence(refused.message),
            line=None if mark is None else mark.line,
            column=None if mark is None else mark.column,
        )
        return ValidationReport(organism=None, errors=(issue,))
    checker = _Checker(document, policy)
    try:
        organism = checker.run()
    except Exception as error:  # noqa: BLE001 - the contract is "never raise for input"
        checker.add(
            "error",
            "validator-failed",
            f"The validator failed on this input ({type(error).__name__}); "
            "please report it with the file.",
            (),
        )
        organism = None
    checker.finish()
    errors = tuple(sorted(checker.errors, key=_position))
    warnings = tuple(sorted(checker.warnings, key=_position))
    return ValidationReport(
        organism=None if errors else organism, errors=errors, warnings=warnings
    )


def load_organism(text: str, *, policy: HandlerPolicy = HOSTED) -> Organism:
    """Validate an organism.yaml and return the organism, or raise.

    Args:
        text: The YAML source.
        policy: Which handlers may be loaded; the hosted policy by default.

    Returns:
        The organism. Warnings are dropped: call ``validate_organism`` to see them.

    Raises:
        FlowInvalid: The flow has errors.
    """
    report = validate_organism(text, policy=policy)
    if report.organism is None:
        raise FlowInvalid(report)
    return report.organism


# --- names and references ----------------------------------------------------

_ORGANISM_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]*")
_LISTENER_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.-]*")
_DOTTED = re.compile(r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+", re.ASCII)
_COLON = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_][\w.]*", re.ASCII)
_WASM = (
    r"wasm:(?P<module>[A-Za-z][A-Za-z0-9_.-]*)"
    r"(?:@(?P<version>[0-9A-Za-z][0-9A-Za-z.+_-]*))?"
)
_WASM_HANDLER = re.compile(_WASM)
_WASM_PAYLOAD = re.compile(_WASM + r"/(?P<type>[A-Za-z0-9_]+)")
_MAX_NAME = 100
_MAX_LISTED = 100  # issues of each severity listed in one report
_MAX_SUGGESTIONS = 20  # "did you mean" look-ups per report
_RESERVED_TYPE_NAMES = frozenset({"None", "True", "False"})
_RESERVED_FIELDS = frozenset(
    {"comment", "get_xobject", "xsd_forward", "xsd_dependencies"}
)

# --- the keys 0.4.0 knows ------------------------------------------------------

_CONCURRENCY: Final[Mapping[str, Any]] = {
    "thread_scheduling": "breadth-first",
    "max_concurrent_pipelines": 50,
    "max_concurrent_handlers": 20,
    "max_concurrent_per_agent": 5,
}
_TOP_KEYS = frozenset(
    {"organism", "listeners", "llm", "payloads", "entry", *_CONCURRENCY}
)
_TOP_IGNORED: Final[Mapping[str, str]] = {
    "llm_backends": "only xml-pipeline's 'check' command reads it; configure llm.backends instead",
    "server": "the platform runs the server",
    "auth": "the platform authenticates every request",
    "tls": "the platform terminates TLS",
    "oob": "the platform has no out-of-band channel for flows",
    "meta": "the platform does not expose flow introspection",
    "gateways": "federation is not supported",
    "backend": "the platform keeps all run state",
}
_ORGANISM_KEYS = frozenset({"name", "version", "description", "entry", *_CONCURRENCY})
_ORGANISM_IGNORED: Final[Mapping[str, str]] = {
    "port": "the platform chooses ports",
    "identity": "the platform signs nothing with a key file",
}
_REQUIRED = ("name", "payload_class", "handler", "description")
_LISTENER_KEYS = frozenset(
    {*_REQUIRED, "agent", "peers", "prompt", "broadcast", "timeout_seconds"}
)
_LISTENER_IGNORED = frozenset(
    {
        "tool",
        "gateway",
        "model",
        "temperature",
        "max_tokens",
        "verbose",
        "confirm_actions",
        "metadata",
        "allowed_tools",
        "blocked_tools",
    }
)
_LLM_KEYS = frozenset(
    {"strategy", "retries", "retry_base_delay", "retry_max_delay", "backends"}
)
_LLM_STRATEGIES = ("failover", "round-robin", "least-loaded")
_LLM_PROVIDERS = ("xai", "anthropic", "openai", "ollama")
_BACKEND_KEYS = frozenset(
    {
        "name",
        "provider",
        "api_key_env",
        "api_key",
        "base_url",
        "priority",
        "rate_limit_tpm",
        "max_concurrent",
        "timeout",
    }
)


# --- helpers ---------------------------------------------------------------------


def _field_path(path: Path) -> str | None:
    text = ""
    for part in path:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text or None


def _describe(value: Any) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, int | float):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 60 else value[:59] + "…"
        return f"the text {shown!r}"
    if isinstance(value, list):
        return "a list"
    return "a mapping"


def _key_text(key: Key) -> str:
    if isinstance(key, str):
        return repr(key)
    kind = (
        "null" if key is None else "a boolean" if isinstance(key, bool) else "a number"
    )
    return f"{key!r} (YAML reads that unquoted key as {kind}; quote it)"


def _did_you_mean(word: object, candidates: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    pool = list(candidates)
    lowered = {candidate.lower(): candidate for candidate in pool}
    close = difflib.get_close_matches(word.lower(), list(lowered), n=1, cutoff=0.75)
    return f"; did you mean {lowered[close[0]]!r}?" if close else ""


def _sentence(text: str) -> str:
    """Capitalise a leading plain word (never an identifier) and end with a stop."""
    first = text.split(" ", 1)[0]
    if first.isalpha() and first.islower():
        text = text[:1].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


def _pascal(field: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in field.split("_") if part)


def _position(issue: Issue) -> tuple[int, int]:
    return (issue.line or 0, issue.column or 0)


def _is_number(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
    )


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _plain(value: Any) -> Any:
    """The value with mapping entries whose keys are not text left out."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items() if isinstance(k, str)}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def _label(index: int, name: str | None) -> str:
    return f"listener {name!r}" if name else f"listeners[{index}]"


class _ListenerDraft(msgspec.Struct, kw_only=True):
    index: int
    name: str | None
    line: int | None
    fields: dict[str, Any]
    handler_kind: HandlerKind | None = None
    payload_type: str | None = None
    payload_source: PayloadSource | None = None
    complete: bool = True


# --- the checker -------------------------------------------------------------------


class _Checker:
    """Walks a parsed document once, collecting issues and building the organism."""

    def __init__(self, document: YamlDocument, policy: HandlerPolicy) -> None:
        self.doc = document
        self.data = document.data
        self.policy = policy
        self.errors: list[Issue] = []
        self.warnings: list[Issue] = []
        self.unlisted: dict[Severity, int] = {"error": 0, "warning": 0}
        self.suggestions_left = _MAX_SUGGESTIONS

    def suggest(self, word: object, candidates: Iterable[str]) -> str:
        """A "did you mean" hint, within a budget so huge flows stay fast."""
        if self.suggestions_left <= 0:
            return ""
        self.suggestions_left -= 1
        return _did_you_mean(word, candidates)

    def finish(self) -> None:
        """Say how many issues were found beyond the listing caps."""
        errors, warnings = self.unlisted["error"], self.unlisted["warning"]
        if errors or warnings:
            self.warnings.append(
                Issue(
                    severity="warning",
                    code="too-many-issues",
                    message=(
                        f"{errors} more errors and {warnings} more warnings were "
                        f"found but not listed (at most {_MAX_LISTED} of each are); "
                        "fix the ones listed and validate again."
                    ),
                )
            )

    # Issues ----------------------------------------------------------------------

    def add(
        self,
        severity: Severity,
        code: str,
        message: str,
        path: Path,
        *,
        at_key: bool = False,
        listener: str | None = None,
        field: Path | None = None,
    ) -> None:
        listed = self.errors if severity == "error" else self.warnings
        if len(listed) >= _MAX_LISTED:
            self.unlisted[severity] += 1
            return
        mark: Mark | None = (
            self.doc.key_mark(path) if at_key else self.doc.value_mark(path)
        )
        issue = Issue(
            severity=severity,
            code=code,
            message=_sentence(message),
            line=None if mark is None else mark.line,
            column=None if mark is None else mark.column,
            listener=listener,
            field=_field_path(path if field is None else field),
        )
        listed.append(issue)

    def error(self, code: str, message: str, path: Path, **kwargs: Any) -> None:
        self.add("error", code, message, path, **kwargs)

    def warn(self, code: str, message: str, path: Path, **kwargs: Any) -> None:
        self.add("warning", code, message, path, **kwargs)

    def line_of(self, path: Path, *, key: bool = True) -> int | None:
        mark = self.doc.key_mark(path) if key else self.doc.value_mark(path)
        return None if mark is None else mark.line

    def check_keys(
        self,
        mapping: Mapping[Key, Any],
        path: Path,
        known: Iterable[str],
        ignored: Mapping[str, str] | None = None,
        *,
        where: str,
        listener: str | None = None,
    ) -> None:
        known = frozenset(known)
        ignored = ignored or {}
        for key in mapping:
            if isinstance(key, str) and key in known:
                continue
            if isinstance(key, str) and key in ignored:
                self.warn(
                    "ignored-key",
                    f"key {key!r} {where} is ignored: {ignored[key]}",
                    (*path, key),
                    at_key=True,
                    listener=listener,
                )
                continue
            hint = self.suggest(key, known)
            self.warn(
                "unknown-key",
                f"key {_key_text(key)} {where} is not one Nextra knows, so it has "
                f"no effect{hint}",
                (*path, key),
                at_key=True,
                listener=listener,
            )

    def text(
        self,
        value: Any,
        path: Path,
        *,
        what: str,
        listener: str | None = None,
    ) -> str | None:
        """A text setting: numbers and booleans are taken as text with a warning."""
        if isinstance(value, str):
            return value
        if isinstance(value, bool | int | float):
            shown = str(value)
            self.warn(
                "not-text",
                f"{what} should be text but YAML read {_describe(value)}; it is "
                f"used as {shown!r}, so quote it if you meant something else",
                path,
                listener=listener,
            )
            return shown
        self.error(
            "invalid-type",
            f"{what} must be text; found {_describe(value)}",
            path,
            listener=listener,
        )
        return None

    # The whole document ----------------------------------------------------------

    def run(self) -> Organism | None:
        data = self.data
        self.check_keys(data, (), _TOP_KEYS, _TOP_IGNORED, where="at the top level")
        organism_block = self.organism_block()
        name = self.organism_name(organism_block)
        version = self.organism_text(organism_block, "version", "0.1.0")
        description = self.organism_text(organism_block, "description", "")
        settings = self.concurrency(organism_block)
        payloads = self.payloads()
        drafts = self.listeners(payloads)
        listeners = self.finish_listeners(drafts)
        entry = self.entry(organism_block, drafts)
        llm = self.llm()
        if name is None or self.errors:
            return None
        return Organism(
            name=name,
            version=version,
            description=description,
            entry=entry,
            listeners=listeners,
            payloads=tuple(payloads.values()),
            llm=llm,
            thread_scheduling=str(settings["thread_scheduling"]),
            max_concurrent_pipelines=int(settings["max_concurrent_pipelines"]),
            max_concurrent_handlers=int(settings["max_concurrent_handlers"]),
            max_concurrent_per_agent=int(settings["max_concurrent_per_agent"]),
        )

    def organism_block(self) -> dict[Key, Any]:
        block = self.data.get("organism")
        if block is None:
            return {}
        if not isinstance(block, dict):
            self.error(
                "invalid-type",
                "'organism' must be a mapping with at least 'name'; found "
                f"{_describe(block)}",
                ("organism",),
            )
            return {}
        self.check_keys(
            block,
            ("organism",),
            _ORGANISM_KEYS,
            _ORGANISM_IGNORED,
            where="under 'organism'",
        )
        return block

    def organism_name(self, block: dict[Key, Any]) -> str | None:
        invalid_block = "organism" in self.data and not isinstance(
            self.data["organism"], dict | None
        )
        if "name" not in block and not invalid_block:
            present = "organism" in self.data
            self.error(
                "missing-organism-name",
                "organism.name is required: Nextra names every flow (xml-pipeline "
                "0.4.0 would call it 'unnamed'); add 'organism:' with 'name: "
                "my-flow'",
                ("organism",) if present else (),
                at_key=present,
                field=("organism", "name"),
            )
            return None
        if invalid_block:
            return None  # already reported as the wrong type
        path: Path = ("organism", "name")
        name = block["name"]
        if not isinstance(name, str):
            self.error(
                "invalid-type",
                f"organism.name must be text; found {_describe(name)}",
                path,
            )
            return None
        if not _ORGANISM_NAME.fullmatch(name) or len(name) > _MAX_NAME:
            self.error(
                "invalid-name",
                f"organism.name {name!r} must start with a letter and hold only "
                f"letters, digits, '_' and '-' (at most {_MAX_NAME} characters)",
                path,
            )
            return None
        return name

    def organism_text(self, block: dict[Key, Any], key: str, default: str) -> str:
        if key not in block or block[key] is None:
            return default
        value = self.text(block[key], ("organism", key), what=f"organism.{key}")
        return default if value is None else value

    def concurrency(self, block: dict[Key, Any]) -> dict[str, Any]:
        settings: dict[str, Any] = {}
        for key, default in _CONCURRENCY.items():
            at_top, in_block = key in self.data, key in block
            path: Path = (key,) if at_top else ("organism", key)
            if at_top and in_block and self.data[key] != block[key]:
                self.error(
                    "conflicting-setting",
                    f"{key} is set twice with different values: "
                    f"{self.data[key]!r} at the top level (line "
                    f"{self.line_of((key,))}) and {block[key]!r} under organism "
                    f"(line {self.line_of(('organism', key))}); keep one",
                    (key,),
                    at_key=True,
                )
            value = self.data[key] if at_top else block[key] if in_block else None
            if value is None:
                settings[key] = default
                continue
            if key == "thread_scheduling":
                if value not in ("breadth-first", "depth-first"):
                    self.warn(
                        "ignored-value",
                        f"thread_scheduling must be 'breadth-first' or "
                        f"'depth-first'; found {_describe(value)}. It has no effect "
                        "either way, so the default is used",
                        path,
                    )
                    value = default
            elif not _is_count(value) or value < 1:
                self.error(
                    "invalid-value",
                    f"{key} must be a whole number of at least 1; found "
                    f"{_describe(value)}",
                    path,
                )
                value = default
            settings[key] = value
        return settings

    # payloads: -------------------------------------------------------------------

    def payloads(self) -> dict[str, PayloadType]:
        section = self.data.get("payloads")
        if section is None:
            return {}
        if not isinstance(section, dict):
            self.error(
                "invalid-type",
                "'payloads' must be a mapping of type names to their fields; found "
                f"{_describe(section)}",
                ("payloads",),
            )
            return {}
        names: dict[str, str] = {}  # lower-cased -> as written
        for name in section:
            path: Path = ("payloads", name)
            if not isinstance(name, str) or not TYPE_NAME.fullmatch(name):
                self.error(
                    "invalid-type-name",
                    f"payload type name {_key_text(name)} must be PascalCase: a "
                    "capital letter, then letters and digits",
                    path,
                    at_key=True,
                )
                continue
            if len(name) > _MAX_NAME or name in _RESERVED_TYPE_NAMES:
                self.error(
                    "invalid-type-name",
                    f"payload type name {name!r} is reserved or longer than "
                    f"{_MAX_NAME} characters",
                    path,
                    at_key=True,
                )
                continue
            clash = next(
                (b for b in BUILTIN_PAYLOADS if b.lower() == name.lower()), None
            )
            if clash is not None:
                self.error(
                    "duplicate-payload-type",
                    f"payload type {name!r} has the name of the built-in type "
                    f"{clash!r}; routing ignores case, so choose another name",
                    path,
                    at_key=True,
                )
                continue
            if name.lower() in names:
                first = names[name.lower()]
                self.error(
                    "duplicate-payload-type",
                    f"payload types {first!r} (line {self.line_of(('payloads', first))}) "
                    f"and {name!r} differ only in case, and routing ignores case; "
                    "rename one",
                    path,
                    at_key=True,
                )
                continue
            names[name.lower()] = name
        declared: dict[str, PayloadType] = {}
        references: dict[str, list[tuple[str, str]]] = {}
        for name in names.values():
            fields, refs = self.payload_fields(name, section[name])
            declared[name] = PayloadType(
                name=name,
                fields=fields,
                source="declared",
                line=self.line_of(("payloads", name)),
            )
            references[name] = refs
        known = set(declared) | set(BUILTIN_PAYLOADS)
        for name, refs in references.items():
            for field, ref in refs:
                if ref in known:
                    continue
                self.error(
                    "unknown-type-reference",
                    f"field {field!r} of payload type {name!r} refers to type "
                    f"{ref!r}, which is neither declared under payloads: nor "
                    f"built in{self.suggest(ref, known)}",
                    ("payloads", name, field),
                )
        self.payload_cycles(references)
        return declared

    def payload_fields(
        self, type_name: str, fields: Any
    ) -> tuple[tuple[PayloadField, ...], list[tuple[str, str]]]:
        base: Path = ("payloads", type_name)
        if not isinstance(fields, dict):
            hint = " (write {} for a type without fields)" if fields is None else ""
            self.error(
                "invalid-type",
                f"payload type {type_name!r} must map field names to types, such "
                f"as 'text: str'; found {_describe(fields)}{hint}",
                base,
            )
            return (), []
        result: list[PayloadField] = []
        refs: list[tuple[str, str]] = []
        pascal: dict[str, str] = {}
        for field, expression in fields.items():
            path: Path = (*base, field)
            if not isinstance(field, str) or not FIELD_NAME.fullmatch(field):
                self.error(
                    "invalid-field-name",
                    f"field name {_key_text(field)} of payload type {type_name!r} "
                    "must start with a letter or '_' and hold only letters, digits "
                    "and '_'",
                    path,
                    at_key=True,
                )
                continue
            if field in _RESERVED_FIELDS or len(field) > _MAX_NAME:
                self.error(
                    "invalid-field-name",
                    f"field name {field!r} of payload type {type_name!r} is "
                    f"reserved ({', '.join(sorted(_RESERVED_FIELDS))}) or longer "
                    f"than {_MAX_NAME} characters",
                    path,
                    at_key=True,
                )
                continue
            element = _pascal(field)
            if element in pascal:
                self.error(
                    "duplicate-field",
                    f"fields {pascal[element]!r} and {field!r} of payload type "
                    f"{type_name!r} both become the XML element <{element}>; "
                    "rename one",
                    path,
                    at_key=True,
                )
                continue
            pascal[element] = field
            if not isinstance(expression, str):
                hint = (
                    "; write list[T] for a list" if isinstance(expression, list) else ""
                )
                self.error(
                    "invalid-type-expression",
                    f"the type of field {field!r} of payload type {type_name!r} "
                    f"must be written as text such as 'str' or 'list[int]'; found "
                    f"{_describe(expression)}{hint}",
                    path,
                )
                continue
            try:
                ref = parse_type_expression(expression)
            except TypeExpressionError as problem:
                self.error(
                    "invalid-type-expression",
                    f"the type {expression!r} of field {field!r} of payload type "
                    f"{type_name!r} is not valid: {problem}",
                    path,
                )
                continue
            refs.extend((field, name) for name in named_refs(ref))
            result.append(PayloadField(name=field, type=ref, line=self.line_of(path)))
        return tuple(result), refs

    def payload_cycles(self, references: Mapping[str, list[tuple[str, str]]]) -> None:
        graph = {
            name: [ref for _, ref in refs if ref in references]
            for name, refs in references.items()
        }
        for cycle in _cycles(graph):
            start = cycle[0]
            self.error(
                "recursive-payload-type",
                f"payload type {start!r} contains itself ({' -> '.join(cycle)}); "
                "a payload must be finite, so break the cycle",
                ("payloads", start),
                at_key=True,
            )

    # listeners: ------------------------------------------------------------------

    def listeners(self, payloads: Mapping[str, PayloadType]) -> list[_ListenerDraft]:
        section = self.data.get("listeners")
        path: Path = ("listeners",)
        if section is None:
            self.warn(
                "no-listeners",
                "the flow has no listeners yet, so nothing can run it; add a "
                "'listeners:' list",
                path if "listeners" in self.data else (),
                at_key=True,
            )
            return []
        if isinstance(section, dict):
            if "directory" in section or "include" in section:
                self.error(
                    "split-listeners",
                    "'listeners' is a directory/include mapping (split loading), "
                    "and Nextra never reads files named in a flow; list the "
                    "listeners inline under 'listeners:'",
                    path,
                    at_key=True,
                )
            else:
                self.error(
                    "invalid-type",
                    "'listeners' must be a list of listener entries; found a mapping",
                    path,
                    at_key=True,
                )
            return []
        if not isinstance(section, list):
            self.error(
                "invalid-type",
                f"'listeners' must be a list of listener entries; found "
                f"{_describe(section)}",
                path,
            )
            return []
        if not section:
            self.warn(
                "no-listeners",
                "the flow has no listeners yet, so nothing can run it",
                path,
                at_key=True,
            )
        return [
            self.listener(index, entry, payloads) for index, entry in enumerate(section)
        ]

    def listener(
        self, index: int, entry: Any, payloads: Mapping[str, PayloadType]
    ) -> _ListenerDraft:
        base: Path = ("listeners", index)
        line = self.line_of(base, key=False)
        if not isinstance(entry, dict):
            self.error(
                "invalid-type",
                f"listeners[{index}] must be a mapping with name, payload_class, "
                f"handler and description; found {_describe(entry)}",
                base,
            )
            return _ListenerDraft(
                index=index, name=None, line=line, fields={}, complete=False
            )
        name = self.listener_name(index, entry)
        draft = _ListenerDraft(index=index, name=name, line=line, fields=entry)
        label = _label(index, name)
        for field in _REQUIRED:
            if field not in entry:
                draft.complete = False
                extra = (
                    "; xml-pipeline's check command says 'listeners[].name is required'"
                    if field == "name"
                    else ""
                )
                self.error(
                    "missing-field",
                    f"{label} has no {field!r}; every listener needs name, "
                    "payload_class, handler and description (xml-pipeline 0.4.0 "
                    f"fails with KeyError: {field!r}{extra})",
                    base,
                    listener=name,
                    field=(*base, field),
                )
        self.check_keys(
            entry,
            base,
            _LISTENER_KEYS,
            dict.fromkeys(
                _LISTENER_IGNORED,
                "xml-pipeline 0.4.0 ignores it; it is kept with the listener but "
                "changes nothing at run time",
            ),
            where=f"of {label}",
            listener=name,
        )
        if "handler" in entry:
            draft.handler_kind = self.handler(
                entry["handler"], (*base, "handler"), name
            )
        if "payload_class" in entry:
            resolved = self.payload_class(
                entry["payload_class"], (*base, "payload_class"), name, payloads
            )
            if resolved is not None:
                draft.payload_type, draft.payload_source = resolved
        if "description" in entry:
            description = self.text(
                entry["description"],
                (*base, "description"),
                what=f"the description of {label}",
                listener=name,
            )
            draft.complete &= description is not None
        self.listener_options(draft, entry, base, label)
        return draft

    def listener_name(self, index: int, entry: dict[Key, Any]) -> str | None:
        if "name" not in entry:
            return None
        path: Path = ("listeners", index, "name")
        name = entry["name"]
        if not isinstance(name, str):
            self.error(
                "invalid-type",
                f"the name of listeners[{index}] must be text; found {_describe(name)}",
                path,
            )
            return None
        if not _LISTENER_NAME.fullmatch(name) or len(name) > _MAX_NAME:
            self.error(
                "invalid-name",
                f"listener name {name!r} must start with a letter and hold only "
                f"letters, digits, '_', '.' and '-' (at most {_MAX_NAME} "
                "characters)",
                path,
                listener=name,
            )
            return None
        if name.lower() == "system" or name.lower().startswith("system."):
            self.error(
                "reserved-name",
                f"listener name {name!r} is reserved: names starting with "
                "'system.' belong to the platform",
                path,
                listener=name,
            )
            return None
        if "." in name:
            self.warn(
                "dotted-name",
                f"listener name {name!r} contains a dot: Nextra routes it "
                "correctly, but xml-pipeline 0.4.0 splits call chains on dots, so "
                "respond() to or through it goes astray there",
                path,
                listener=name,
            )
        return name

    def listener_options(
        self,
        draft: _ListenerDraft,
        entry: dict[Key, Any],
        base: Path,
        label: str,
    ) -> None:
        name = draft.name
        agent = entry.get("agent", False)
        if not isinstance(agent, bool):
            draft.complete = False
            self.error(
                "invalid-type",
                f"'agent' of {label} must be true or false; found "
                f"{_describe(agent)} (xml-pipeline 0.4.0 would treat any non-empty "
                "text, even 'false', as true)",
                (*base, "agent"),
                listener=name,
            )
            agent = False
        peers = entry.get("peers")
        if peers is not None and not isinstance(peers, list):
            draft.complete = False
            hint = f"; write peers: [{peers}]" if isinstance(peers, str) else ""
            self.error(
                "peers-not-a-list",
                f"'peers' of {label} must be a list of listener names; found "
                f"{_describe(peers)} (xml-pipeline 0.4.0 would match a text by "
                f"substring){hint}",
                (*base, "peers"),
                listener=name,
            )
        elif peers:
            for position, peer in enumerate(peers):
                if not isinstance(peer, str) or not peer:
                    draft.complete = False
                    self.error(
                        "invalid-peer",
                        f"peer {position} of {label} must be a listener name; found "
                        f"{_describe(peer)}",
                        (*base, "peers", position),
                        listener=name,
                    )
        prompt = entry.get("prompt")
        if prompt is not None:
            prompt = self.text(
                prompt, (*base, "prompt"), what=f"the prompt of {label}", listener=name
            )
            if prompt is None:
                draft.complete = False
        if agent and not prompt:
            self.warn(
                "agent-without-prompt",
                f"{label} is an agent without a prompt, so its LLM gets an empty "
                "system prompt; add 'prompt:'",
                (*base, "agent"),
                at_key=True,
                listener=name,
            )
        if prompt and not agent:
            self.warn(
                "prompt-without-agent",
                f"{label} has a prompt but is not an agent ('agent: true'), so the "
                "prompt is never used",
                (*base, "prompt"),
                at_key=True,
                listener=name,
            )
        if "broadcast" in entry and entry["broadcast"] is not False:
            self.warn(
                "broadcast-no-effect",
                f"'broadcast' of {label} has no effect: routing keys include the "
                "listener name, so no two listeners share one; list several peers "
                "or reuse the name instead",
                (*base, "broadcast"),
                at_key=True,
                listener=name,
            )
        timeout = entry.get("timeout_seconds")
        if timeout is not None and (not _is_number(timeout) or timeout <= 0):
            draft.complete = False
            self.error(
                "invalid-value",
                f"'timeout_seconds' of {label} must be a number of seconds above 0; "
                f"found {_describe(timeout)}",
                (*base, "timeout_seconds"),
                listener=name,
            )

    # handler: ---------------------------------------------------------------------

    def handler(
        self, value: Any, path: Path, listener: str | None
    ) -> HandlerKind | None:
        catalogue = ", ".join(f"builtin:{kind}" for kind in BUILTIN_HANDLERS)
        if not isinstance(value, str):
            self.error(
                "invalid-type",
                f"handler must be text such as 'builtin:llm'; found {_describe(value)}",
                path,
                listener=listener,
            )
            return None
        if value.startswith("builtin:"):
            kind = value.removeprefix("builtin:")
            if kind in BUILTIN_HANDLERS:
                return "builtin"
            if kind == "code":
                hint = (
                    "; custom code runs as a WebAssembly module: handler: wasm:<module>"
                )
            else:
                hint = (
                    self.suggest(kind, BUILTIN_HANDLERS)
                    or f"; choose one of {catalogue}"
                )
            self.error(
                "unknown-builtin",
                f"there is no built-in handler {kind!r}{hint}",
                path,
                listener=listener,
            )
            return None
        if value.startswith("wasm:"):
            match = _WASM_HANDLER.fullmatch(value)
            if match is None:
                self.error(
                    "invalid-wasm-reference",
                    f"handler {value!r} is not a valid WebAssembly reference; write "
                    "wasm:<module> or wasm:<module>@<version>, where the module name "
                    "starts with a letter and holds letters, digits, '_', '.' and '-'",
                    path,
                    listener=listener,
                )
                return None
            found = self.wasm_module(match["module"], match["version"], path, listener)
            return "wasm" if found is not None else None
        if _COLON.fullmatch(value):
            self.colon_path(value, path, listener, "handler")
            return None
        if _DOTTED.fullmatch(value):
            return "python" if self.python_handler(value, path, listener) else None
        hint = (
            f"; did you mean 'builtin:{value}'?"
            if value in BUILTIN_HANDLERS
            else f" (the built-ins are {catalogue})"
        )
        self.error(
            "invalid-handler",
            f"handler {value!r} is not a handler reference; write builtin:<kind>, "
            "wasm:<module>, or in a self-hosted deployment a Python path "
            f"package.module.function{hint}",
            path,
            listener=listener,
        )
        return None

    def wasm_module(
        self, module: str, version: str | None, path: Path, listener: str | None
    ) -> WasmModule | None:
        resolve = self.policy.resolve_wasm
        found = (
            WasmModule(name=module, version=version)
            if resolve is None
            else resolve(module, version)
        )
        if found is None:
            shown = module if version is None else f"{module}@{version}"
            self.error(
                "unknown-wasm-module",
                f"there is no WebAssembly module {shown!r} for this flow; upload it "
                "first or check the name and version",
                path,
                listener=listener,
            )
        return found

    def colon_path(
        self, value: str, path: Path, listener: str | None, what: str
    ) -> None:
        dotted = value.replace(":", ".")
        note = (
            ""
            if self.policy.trusted_python_prefixes
            else "; note that the hosted service does not load Python code at all"
        )
        self.error(
            "colon-import-path",
            f"{what} {value!r} uses the module:attribute form, which xml-pipeline "
            f"0.4.0 cannot load either (ValueError); write {dotted!r}{note}",
            path,
            listener=listener,
        )

    def refuse_python(
        self, value: str, path: Path, listener: str | None, what: str
    ) -> None:
        if self.policy.trusted_python_prefixes:
            prefixes = ", ".join(self.policy.trusted_python_prefixes)
            message = (
                f"{what} {value!r} is a Python import path outside the trusted "
                f"prefixes ({prefixes}); only modules under them may be loaded"
            )
        elif what == "handler":
            message = (
                f"handler {value!r} is a Python import path, and the hosted service "
                "does not run Python handlers; use a builtin:<kind> handler or a "
                "wasm:<module> module"
            )
        else:
            message = (
                f"payload_class {value!r} is a Python import path, and the hosted "
                "service does not load Python classes; declare the type under "
                "'payloads:' or use a built-in type"
            )
        self.error("python-not-allowed", message, path, listener=listener)

    def python_handler(self, value: str, path: Path, listener: str | None) -> bool:
        if not self.policy.trusts(value):
            self.refuse_python(value, path, listener, "handler")
            return False
        target = self.import_target(value, path, listener, "handler")
        if target is None:
            return False
        call = getattr(target, "__call__", None)  # noqa: B004 - async __call__ counts
        if not (
            inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)
        ):
            self.error(
                "handler-not-async",
                f"handler {value!r} is not an async function; xml-pipeline awaits "
                "handler(payload, metadata), so define it with 'async def'",
                path,
                listener=listener,
            )
            return False
        return True

    def import_target(
        self, value: str, path: Path, listener: str | None, what: str
    ) -> Any | None:
        module_name, _, attribute = value.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except Exception as error:  # noqa: BLE001 - trusted code may fail any way
            self.error(
                "unresolved-import",
                f"{what} {value!r} cannot be loaded: importing {module_name!r} "
                f"failed ({type(error).__name__}: {error})",
                path,
                listener=listener,
            )
            return None
        if not hasattr(module, attribute):
            self.error(
                "unresolved-import",
                f"{what} {value!r} cannot be loaded: module {module_name!r} has no "
                f"attribute {attribute!r}",
                path,
                listener=listener,
            )
            return None
        return getattr(module, attribute)

    # payload_class: -------------------------------------------------------------

    def payload_class(
        self,
        value: Any,
        path: Path,
        listener: str | None,
        payloads: Mapping[str, PayloadType],
    ) -> tuple[str, PayloadSource] | None:
        if not isinstance(value, str):
            self.error(
                "invalid-type",
                "payload_class must be text naming a payload type; found "
                f"{_describe(value)}",
                path,
                listener=listener,
            )
            return None
        if value in payloads:
            return value, "declared"
        if value in BUILTIN_PAYLOADS:
            return value, "builtin"
        if value in PAYLOAD_ALIASES:
            return PAYLOAD_ALIASES[value], "builtin"
        if value.startswith("wasm:"):
            return self.wasm_payload(value, path, listener)
        if _COLON.fullmatch(value):
            self.colon_path(value, path, listener, "payload_class")
            return None
        if _DOTTED.fullmatch(value):
            return self.python_payload(value, path, listener)
        if FIELD_NAME.fullmatch(value):
            known = itertools.chain(payloads, BUILTIN_PAYLOADS)
            hint = self.suggest(value, known)
            self.error(
                "unknown-payload-type",
                f"payload type {value!r} is not declared under 'payloads:' and is "
                f"not a built-in type ({', '.join(BUILTIN_PAYLOADS)}){hint}",
                path,
                listener=listener,
            )
            return None
        self.error(
            "invalid-payload-class",
            f"payload_class {value!r} is not a payload type reference; write a "
            "declared or built-in type name, wasm:<module>/<Type>, or in a "
            "self-hosted deployment a Python path package.module.Class",
            path,
            listener=listener,
        )
        return None

    def wasm_payload(
        self, value: str, path: Path, listener: str | None
    ) -> tuple[str, PayloadSource] | None:
        match = _WASM_PAYLOAD.fullmatch(value)
        if match is None or not TYPE_NAME.fullmatch(match["type"]):
            self.error(
                "invalid-payload-class",
                f"payload_class {value!r} is not a valid WebAssembly type "
                "reference; write wasm:<module>/<Type> (or "
                "wasm:<module>@<version>/<Type>) with a PascalCase type name",
                path,
                listener=listener,
            )
            return None
        module = self.wasm_module(match["module"], match["version"], path, listener)
        if module is None:
            return None
        type_name = match["type"]
        if module.types is not None and type_name not in module.types:
            exported = ", ".join(sorted(module.types)) or "none"
            self.error(
                "unknown-payload-type",
                f"WebAssembly module {module.name!r} exports no payload type "
                f"{type_name!r} (it exports: {exported})",
                path,
                listener=listener,
            )
            return None
        return type_name, "wasm"

    def python_payload(
        self, value: str, path: Path, listener: str | None
    ) -> tuple[str, PayloadSource] | None:
        if not self.policy.trusts(value):
            self.refuse_python(value, path, listener, "payload_class")
            return None
        target = self.import_target(value, path, listener, "payload_class")
        if target is None:
            return None
        if not (isinstance(target, type) and dataclasses.is_dataclass(target)):
            self.error(
                "payload-not-dataclass",
                f"payload_class {value!r} is not a dataclass; payload types must be "
                "dataclasses (decorated with @xmlify for xml-pipeline)",
                path,
                listener=listener,
            )
            return None
        return target.__name__, "python"

    # Across listeners --------------------------------------------------------------

    def finish_listeners(self, drafts: list[_ListenerDraft]) -> tuple[Listener, ...]:
        names = {d.name.lower(): d.name for d in drafts if d.name is not None}
        types_by_name: dict[str, set[str]] = {}
        first_seen: dict[str, _ListenerDraft] = {}
        for draft in drafts:
            if draft.name is None:
                continue
            key = draft.name.lower()
            if draft.payload_type is not None:
                types_by_name.setdefault(key, set()).add(draft.payload_type.lower())
            if key not in first_seen:
                first_seen[key] = draft
                continue
            first = first_seen[key]
            same_type = (
                draft.payload_type is not None
                and first.payload_type is not None
                and draft.payload_type.lower() == first.payload_type.lower()
            )
            effect = (
                "each message is delivered to both entries, one after the other, in "
                "file order"
                if same_type
                else "the name accepts each entry's payload type, with its own handler"
            )
            self.warn(
                "duplicate-listener",
                f"listener name {draft.name!r} is used again (first on line "
                f"{first.line}; names ignore case): both entries are kept and "
                f"{effect}",
                ("listeners", draft.index, "name"),
                listener=draft.name,
            )
        for draft in drafts:
            self.check_peers(draft, names, types_by_name)
        listeners = []
        for draft in drafts:
            listener = self.build_listener(draft)
            if listener is not None:
                listeners.append(listener)
        return tuple(listeners)

    def check_peers(
        self,
        draft: _ListenerDraft,
        names: Mapping[str, str],
        types_by_name: Mapping[str, set[str]],
    ) -> None:
        peers = draft.fields.get("peers")
        if not isinstance(peers, list):
            return
        label = _label(draft.index, draft.name)
        for position, peer in enumerate(peers):
            if not isinstance(peer, str) or not peer or peer.lower() in names:
                continue
            path: Path = ("listeners", draft.index, "peers", position)
            base, _, suffix = peer.rpartition(".")
            if base.lower() in names and suffix.lower() in types_by_name.get(
                base.lower(), set()
            ):
                self.error(
                    "typed-peer",
                    f"peer {peer!r} of {label} uses the name.PayloadType form, which "
                    "never routes (xml-pipeline 0.4.0 checks the whole text against "
                    f"'to'); list the listener name {names[base.lower()]!r} instead",
                    path,
                    listener=draft.name,
                )
                continue
            self.warn(
                "unknown-peer",
                f"peer {peer!r} of {label} references an unknown listener: no "
                "listener in this flow has that name, so messages sent to it are "
                f"dropped{self.suggest(peer, names.values())}",
                path,
                listener=draft.name,
            )

    def build_listener(self, draft: _ListenerDraft) -> Listener | None:
        fields = draft.fields
        if (
            not draft.complete
            or draft.name is None
            or draft.handler_kind is None
            or draft.payload_type is None
            or draft.payload_source is None
        ):
            return None
        prompt = fields.get("prompt")
        timeout = fields.get("timeout_seconds")
        return Listener(
            name=draft.name,
            payload_class=str(fields["payload_class"]),
            handler=str(fields["handler"]),
            description=str(fields["description"]),
            agent=bool(fields.get("agent", False)),
            peers=tuple(fields.get("peers") or ()),
            prompt="" if prompt is None else str(prompt),
            broadcast=fields.get("broadcast") is True,
            timeout_seconds=None if timeout is None else float(timeout),
            extras={
                key: _plain(value)
                for key, value in fields.items()
                if isinstance(key, str) and key in _LISTENER_IGNORED
            },
            line=draft.line,
            handler_kind=draft.handler_kind,
            payload_type=draft.payload_type,
            payload_source=draft.payload_source,
        )

    def entry(self, block: dict[Key, Any], drafts: list[_ListenerDraft]) -> str | None:
        at_top, in_block = "entry" in self.data, "entry" in block
        names = [d.name for d in drafts if d.name is not None]
        if not (at_top or in_block):
            return names[0] if names else None
        path: Path = ("entry",) if at_top else ("organism", "entry")
        value = self.data["entry"] if at_top else block["entry"]
        if at_top and in_block and self.data["entry"] != block["entry"]:
            self.error(
                "conflicting-setting",
                f"entry is set twice with different values: "
                f"{self.data['entry']!r} at the top level (line "
                f"{self.line_of(('entry',))}) and {block['entry']!r} under organism "
                f"(line {self.line_of(('organism', 'entry'))}); keep one",
                ("entry",),
                at_key=True,
            )
            return None
        if not isinstance(value, str):
            self.error(
                "invalid-type",
                f"entry must be a listener name; found {_describe(value)}",
                path,
            )
            return None
        match = next((name for name in names if name.lower() == value.lower()), None)
        if match is None:
            self.error(
                "unknown-entry",
                f"entry {value!r} names no listener in this flow"
                f"{self.suggest(value, names)}",
                path,
            )
        return match

    # llm: ----------------------------------------------------------------------------

    def llm(self) -> dict[str, Any]:
        section = self.data.get("llm")
        if section is None:
            return {}
        base: Path = ("llm",)
        if not isinstance(section, dict):
            self.error(
                "invalid-type",
                f"'llm' must be a mapping of router settings; found {_describe(section)}",
                base,
            )
            return {}
        self.check_keys(section, base, _LLM_KEYS, where="under 'llm'")
        strategy = section.get("strategy")
        if strategy is not None:
            if not isinstance(strategy, str):
                self.error(
                    "invalid-type",
                    f"llm.strategy must be text; found {_describe(strategy)}",
                    (*base, "strategy"),
                )
            elif strategy.lower().replace("_", "-") not in _LLM_STRATEGIES:
                self.warn(
                    "llm-unknown-strategy",
                    f"llm.strategy {strategy!r} is not one of "
                    f"{', '.join(_LLM_STRATEGIES)}, so it becomes failover",
                    (*base, "strategy"),
                )
        retries = section.get("retries")
        if retries is not None and (not _is_count(retries) or retries < 0):
            self.error(
                "invalid-value",
                f"llm.retries must be a whole number of at least 0; found "
                f"{_describe(retries)}",
                (*base, "retries"),
            )
        for key in ("retry_base_delay", "retry_max_delay"):
            delay = section.get(key)
            if delay is not None and (not _is_number(delay) or delay < 0):
                self.error(
                    "invalid-value",
                    f"llm.{key} must be a number of seconds, at least 0; found "
                    f"{_describe(delay)}",
                    (*base, key),
                )
        backends = section.get("backends")
        if backends is not None:
            self.llm_backends(backends)
        result: dict[str, Any] = _plain(section)
        return result

    def llm_backends(self, backends: Any) -> None:
        base: Path = ("llm", "backends")
        if not isinstance(backends, list):
            self.error(
                "invalid-type",
                f"llm.backends must be a list of backends; found {_describe(backends)}",
                base,
            )
            return
        seen: dict[str, int] = {}
        providers = ", ".join(_LLM_PROVIDERS)
        for index, backend in enumerate(backends):
            path: Path = (*base, index)
            if not isinstance(backend, dict):
                self.error(
                    "invalid-type",
                    f"llm.backends[{index}] must be a mapping with at least "
                    f"'provider'; found {_describe(backend)}",
                    path,
                )
                continue
            self.check_keys(
                backend,
                path,
                _BACKEND_KEYS,
                {"supported_models": "xml-pipeline 0.4.0 ignores it"},
                where=f"of llm.backends[{index}]",
            )
            provider = backend.get("provider")
            if provider is None:
                self.error(
                    "llm-unknown-provider",
                    f"llm.backends[{index}] has no 'provider' (xml-pipeline 0.4.0 "
                    f"fails with 'Unknown provider: '); choose one of {providers}",
                    path,
                    field=(*path, "provider"),
                )
            elif (
                not isinstance(provider, str) or provider.lower() not in _LLM_PROVIDERS
            ):
                self.error(
                    "llm-unknown-provider",
                    f"Unknown provider: {provider} (llm.backends[{index}]); "
                    f"choose one of {providers}",
                    (*path, "provider"),
                )
            for key in ("name", "api_key_env", "api_key", "base_url"):
                if key in backend and not isinstance(backend[key], str):
                    self.error(
                        "invalid-type",
                        f"llm.backends[{index}].{key} must be text; found "
                        f"{_describe(backend[key])}",
                        (*path, key),
                    )
            for key in ("priority", "rate_limit_tpm", "max_concurrent", "timeout"):
                if key in backend and not _is_number(backend[key]):
                    self.error(
                        "invalid-type",
                        f"llm.backends[{index}].{key} must be a number; found "
                        f"{_describe(backend[key])}",
                        (*path, key),
                    )
            if "api_key" in backend:
                self.warn(
                    "llm-inline-secret",
                    f"llm.backends[{index}] has an 'api_key' written into the flow, "
                    "where everyone who can read the flow sees it; store it as a "
                    "tenant secret and name it with 'api_key_env'",
                    (*path, "api_key"),
                    at_key=True,
                )
            name = backend.get("name", provider)
            if isinstance(name, str):
                if name in seen:
                    self.warn(
                        "llm-duplicate-backend",
                        f"the llm backend name {name!r} is used twice (backends "
                        f"{seen[name]} and {index}; a backend without 'name' is "
                        "named after its provider): give each backend its own name",
                        path,
                    )
                else:
                    seen[name] = index


def _cycles(graph: Mapping[str, list[str]]) -> list[list[str]]:
    """One cycle per back edge of a depth-first walk, as ``[a, b, ..., a]``.

    Linear in the size of the graph; every type on a cycle is reported at most
    once, at the first type of the cycle in declaration order.
    """
    state: dict[str, int] = {}  # 1: on the current path, 2: finished
    found: list[list[str]] = []
    reported: set[str] = set()
    for root in graph:
        if root in state:
            continue
        path = [root]
        state[root] = 1
        pending = [iter(graph[root])]
        while pending:
            successor = next(pending[-1], None)
            if successor is None:
                state[path.pop()] = 2
                pending.pop()
            elif successor not in state:
                state[successor] = 1
                path.append(successor)
                pending.append(iter(graph[successor]))
            elif state[successor] == 1 and successor not in reported:
                cycle = [*path[path.index(successor) :], successor]
                reported.update(cycle)
                found.append(cycle)
    return found
