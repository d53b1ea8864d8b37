"""Flows: the organism.yaml document, its validation, and its canvas."""

from nextra.domain.flows.catalogue import (
    BUILTIN_HANDLERS,
    BUILTIN_PAYLOADS,
    PAYLOAD_ALIASES,
    BuiltinHandler,
)
from nextra.domain.flows.model import (
    ISSUE_CODES,
    HandlerKind,
    Issue,
    Listener,
    Organism,
    PayloadField,
    PayloadSource,
    PayloadType,
    Severity,
    TypeRef,
    ValidationReport,
)
from nextra.domain.flows.report import format_issue, format_report
from nextra.domain.flows.typeexpr import TypeExpressionError, parse_type_expression
from nextra.domain.flows.validate import (
    HOSTED,
    FlowInvalid,
    HandlerPolicy,
    WasmModule,
    WasmResolver,
    load_organism,
    validate_organism,
)
from nextra.domain.flows.yamlsafe import (
    DEFAULT_LIMITS,
    Mark,
    YamlDocument,
    YamlLimits,
    YamlRefused,
    parse_yaml,
)

__all__ = (
    "BUILTIN_HANDLERS",
    "BUILTIN_PAYLOADS",
    "DEFAULT_LIMITS",
    "HOSTED",
    "ISSUE_CODES",
    "PAYLOAD_ALIASES",
    "BuiltinHandler",
    "FlowInvalid",
    "HandlerKind",
    "HandlerPolicy",
    "Issue",
    "Listener",
    "Mark",
    "Organism",
    "PayloadField",
    "PayloadSource",
    "PayloadType",
    "Severity",
    "TypeExpressionError",
    "TypeRef",
    "ValidationReport",
    "WasmModule",
    "WasmResolver",
    "YamlDocument",
    "YamlLimits",
    "YamlRefused",
    "format_issue",
    "format_report",
    "load_organism",
    "parse_type_expression",
    "parse_yaml",
    "validate_organism",
)
