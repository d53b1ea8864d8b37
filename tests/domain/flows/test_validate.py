"""validate_organism: what xml-pipeline 0.4.0 accepts, and every problem as an Issue."""

from __future__ import annotations

import textwrap
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nextra.domain.flows import (
    HOSTED,
    ISSUE_CODES,
    FlowInvalid,
    HandlerPolicy,
    Issue,
    Organism,
    ValidationReport,
    WasmModule,
    load_organism,
    validate_organism,
)

FIXTURE = "tests.domain.flows.handlers_fixture"
TRUSTED = HandlerPolicy(trusted_python_prefixes=(FIXTURE,))

VALID = f"""\
organism:
  name: support-desk
  version: "1.2"
  description: Answers support questions.
entry: triage
max_concurrent_handlers: 10
payloads:
  Question:
    text: str
    tags: list[str]
    customer: Customer | None
  Customer:
    name: str
    scores: dict[str, float]
    vip: bool
    visits: int
listeners:
  - name: triage
    payload_class: TextInput
    handler: builtin:llm
    description: Reads the request and decides who answers.
    agent: true
    prompt: You route support questions.
    peers: [answerer, calculator, greeter]
    timeout_seconds: 20
  - name: answerer
    payload_class: Question
    handler: builtin:output
    description: Sends the answer back.
  - name: calculator
    payload_class: wasm:calc@1.0.0/Expression
    handler: wasm:calc@1.0.0
    description: Evaluates arithmetic.
  - name: greeter
    payload_class: {FIXTURE}.Greeting
    handler: {FIXTURE}.greet
    description: Greets in Python.
llm:
  strategy: round-robin
  retries: 2
  backends:
    - provider: anthropic
      api_key_env: ANTHROPIC_KEY
    - provider: XAI
      name: grok
      priority: 2
"""

MINIMAL = """\
organism:
  name: demo
listeners:
  - name: a
    payload_class: TextInput
    handler: builtin:echo
    description: Echoes.
"""


def check(text: str, policy: HandlerPolicy = HOSTED) -> ValidationReport:
    """Validate, and hold every issue to the documented code catalogue."""
    report = validate_organism(textwrap.dedent(text), policy=policy)
    for issue in report.issues:
        assert ISSUE_CODES.get(issue.code) == issue.severity, issue
        assert issue.message.endswith((".", "?")), issue
    return report


def only(report: ValidationReport, code: str) -> Issue:
    found = [issue for issue in report.issues if issue.code == code]
    assert len(found) == 1, report.issues
    return found[0]


def codes(report: ValidationReport) -> list[str]:
    return [issue.code for issue in report.issues]


def with_listener(extra: str, *, base: str = MINIMAL) -> str:
    return base + textwrap.indent(textwrap.dedent(extra), "  ")


# --- a valid flow -------------------------------------------------------------------


def test_the_full_example_is_valid_with_trusted_python() -> None:
    report = check(VALID, TRUSTED)

    assert report.ok
    assert report.warnings == ()
    organism = report.organism
    assert isinstance(organism, Organism)
    assert organism.name == "support-desk"
    assert organism.version == "1.2"
    assert organism.entry == "triage"
    assert organism.max_concurrent_handlers == 10
    assert organism.max_concurrent_per_agent == 5
    assert [p.name for p in organism.payloads] == ["Question", "Customer"]
    question = organism.payloads[0]
    assert [(f.name, str(f.type)) for f in question.fields] == [
        ("text", "str"),
        ("tags", "list[str]"),
        ("customer", "Customer | None"),
    ]
    assert question.line == 8
    kinds = [
        (x.name, x.handler_kind, x.payload_type, x.payload_source)
        for x in organism.listeners
    ]
    assert kinds == [
        ("triage", "builtin", "TextInput", "builtin"),
        ("answerer", "builtin", "Question", "declared"),
        ("calculator", "wasm", "Expression", "wasm"),
        ("greeter", "python", "Greeting", "python"),
    ]
    triage = organism.listeners[0]
    assert triage.agent
    assert triage.peers == ("answerer", "calculator", "greeter")
    assert triage.timeout_seconds == 20.0
    assert triage.line == 18
    assert triage.routing_key == "triage.textinput"
    assert organism.llm["backends"][1] == {
        "provider": "XAI",
        "name": "grok",
        "priority": 2,
    }


def test_the_hosted_service_refuses_the_python_handler_and_class() -> None:
    report = check(VALID)

    assert report.organism is None
    refusals = [issue for issue in report.errors if issue.code == "python-not-allowed"]
    assert [(i.line, i.listener, i.field) for i in refusals] == [
        (35, "greeter", "listeners[3].payload_class"),
        (36, "greeter", "listeners[3].handler"),
    ]
    assert "does not run Python handlers" in refusals[1].message
    assert "does not load Python classes" in refusals[0].message
    assert len(report.errors) == 2


def test_the_minimal_flow_defaults_like_xml_pipeline() -> None:
    organism = load_organism(MINIMAL)

    assert organism.entry == "a"
    assert organism.version == "0.1.0"
    assert organism.thread_scheduling == "breadth-first"
    assert (
        organism.max_concurrent_pipelines,
        organism.max_concurrent_handlers,
        organism.max_concurrent_per_agent,
    ) == (50, 20, 5)
    assert organism.llm == {}


def test_load_organism_raises_with_the_report() -> None:
    with pytest.raises(FlowInvalid) as caught:
        load_organism("organism: {name: x}\nlisteners: [{name: a}]\n")

    assert len(caught.value.report.errors) == 3
    assert "and 2 more" in caught.value.message


def test_the_report_is_plain_data() -> None:
    import msgspec

    report = check(VALID, TRUSTED)
    decoded = msgspec.json.decode(msgspec.json.encode(report), type=ValidationReport)

    assert decoded == report


# --- xml-pipeline 0.4.0's configuration errors (organism spec 1.4) ---------------------


def test_no_organism_section_fails_like_the_check_command() -> None:
    report = check("listeners: []\n")

    issue = only(report, "missing-organism-name")
    assert "organism.name is required" in issue.message
    assert (issue.line, issue.field) == (1, "organism.name")


def test_an_organism_without_name_points_at_the_organism_key() -> None:
    issue = only(
        check("x: 1\norganism:\n  version: '1'\nlisteners: []\n"),
        "missing-organism-name",
    )

    assert (issue.line, issue.column) == (2, 1)


@pytest.mark.parametrize("field", ["description", "handler", "payload_class", "name"])
def test_a_listener_missing_a_required_field(field: str) -> None:
    lines = {
        "name": "name: b",
        "payload_class": "payload_class: TextInput",
        "handler": "handler: builtin:echo",
        "description": "description: B.",
    }
    entry = (
        "- " + "\n  ".join(text for key, text in lines.items() if key != field) + "\n"
    )

    report = check(with_listener(entry))

    issue = only(report, "missing-field")
    assert f"KeyError: '{field}'" in issue.message
    assert issue.field == f"listeners[1].{field}"
    assert issue.line == 8
    assert issue.listener == (None if field == "name" else "b")
    label = "listeners[1]" if field == "name" else "Listener 'b'"
    assert issue.message.startswith(f"{label} has no '{field}'")
    assert report.organism is None


def test_an_agent_without_handler_or_payload_class_is_still_an_error() -> None:
    report = check(
        with_listener("- name: b\n  agent: true\n  prompt: p\n  description: B.\n")
    )

    assert codes(report) == ["missing-field", "missing-field"]
    assert {i.field for i in report.errors} == {
        "listeners[1].payload_class",
        "listeners[1].handler",
    }


def test_a_listener_without_name_cites_the_check_commands_message() -> None:
    report = check(
        with_listener(
            "- payload_class: TextInput\n  handler: builtin:echo\n  description: B.\n"
        )
    )

    assert "listeners[].name is required" in only(report, "missing-field").message


@pytest.mark.parametrize(
    ("reference", "message"),
    [
        (
            f"{FIXTURE}.no_such_handler",
            f"module '{FIXTURE}' has no attribute 'no_such_handler'",
        ),
        ("tests.domain.flows.no_such_module.handle", "ModuleNotFoundError"),
        (
            "tests.domain.flows.broken_fixture.handle",
            "RuntimeError: this module is broken on purpose",
        ),
    ],
)
def test_an_unresolvable_trusted_handler(reference: str, message: str) -> None:
    policy = HandlerPolicy(trusted_python_prefixes=("tests.domain.flows",))

    report = check(MINIMAL.replace("builtin:echo", reference), policy)

    issue = only(report, "unresolved-import")
    assert message in issue.message
    assert (issue.line, issue.column, issue.listener) == (6, 14, "a")


def test_an_unresolvable_trusted_payload_class() -> None:
    report = check(MINIMAL.replace("TextInput", f"{FIXTURE}.Missing"), TRUSTED)

    assert "has no attribute 'Missing'" in only(report, "unresolved-import").message


@pytest.mark.parametrize("policy", [HOSTED, TRUSTED])
@pytest.mark.parametrize("key", ["handler", "payload_class"])
def test_the_colon_form_is_an_error_with_a_hint(
    key: str, policy: HandlerPolicy
) -> None:
    value = f"{FIXTURE}:Greeting" if key == "payload_class" else f"{FIXTURE}:greet"
    text = MINIMAL.replace(
        "payload_class: TextInput"
        if key == "payload_class"
        else "handler: builtin:echo",
        f"{key}: {value}",
    )

    issue = only(check(text, policy), "colon-import-path")

    assert "module:attribute form" in issue.message
    assert f"write '{value.replace(':', '.')}'" in issue.message
    assert issue.field == f"listeners[0].{key}"


def test_split_listeners_are_refused() -> None:
    report = check(
        "organism: {name: x}\nlisteners:\n  directory: ~/listeners\n  include: ['*.yaml']\n"
    )

    issue = only(report, "split-listeners")
    assert "never reads files" in issue.message
    assert (issue.line, issue.field) == (2, "listeners")


def test_listeners_as_another_mapping_is_an_error() -> None:
    issue = only(check("organism: {name: x}\nlisteners: {a: 1}\n"), "invalid-type")

    assert "must be a list" in issue.message


def test_an_empty_file_is_an_error() -> None:
    report = check("")

    issue = only(report, "yaml-empty")
    assert "must be a YAML mapping" in issue.message
    assert (issue.line, issue.column) == (1, 1)


def test_an_unknown_peer_is_a_warning() -> None:
    text = with_listener(
        "- name: b\n  payload_class: TextInput\n  handler: builtin:llm\n  description: B.\n  agent: true\n  prompt: p\n  peers: [a, nobody]\n"
    )

    report = check(text)

    assert report.ok
    issue = only(report, "unknown-peer")
    assert "references an unknown listener" in issue.message
    assert (issue.line, issue.column, issue.listener, issue.field) == (
        14,
        16,
        "b",
        "listeners[1].peers[1]",
    )


def test_peers_match_listener_names_ignoring_case() -> None:
    text = with_listener(
        "- name: b\n  payload_class: TextInput\n  handler: builtin:echo\n  description: B.\n  peers: [A]\n"
    )

    assert check(text).warnings == ()


def test_a_duplicate_listener_name_is_a_warning_and_both_are_kept() -> None:
    text = with_listener(
        "- name: A\n  payload_class: TextInput\n  handler: builtin:output\n  description: again.\n"
    )

    report = check(text)

    issue = only(report, "duplicate-listener")
    assert "first on line 4" in issue.message
    assert "one after the other" in issue.message
    assert (issue.line, issue.listener) == (8, "A")
    assert report.organism is not None
    assert [x.name for x in report.organism.listeners] == ["a", "A"]


def test_a_duplicate_name_with_another_payload_type_is_a_multi_type_listener() -> None:
    text = with_listener(
        "- name: a\n  payload_class: TextOutput\n  handler: builtin:output\n  description: again.\n"
    )

    assert (
        "accepts each entry's payload type"
        in only(check(text), "duplicate-listener").message
    )


def test_an_unknown_llm_provider_fails_like_bootstrap() -> None:
    report = check(
        MINIMAL + "llm:\n  backends:\n    - provider: grok\n    - api_key_env: K\n"
    )

    first, second = (i for i in report.errors if i.code == "llm-unknown-provider")
    assert first.message.startswith("Unknown provider: grok")
    assert (first.line, first.field) == (10, "llm.backends[0].provider")
    assert "has no 'provider'" in second.message
    assert second.field == "llm.backends[1].provider"


def test_an_invalid_llm_strategy_becomes_failover_with_a_warning() -> None:
    report = check(MINIMAL + "llm:\n  strategy: fastest\n")

    assert report.ok
    assert "becomes failover" in only(report, "llm-unknown-strategy").message


@pytest.mark.parametrize(
    "strategy", ["failover", "round-robin", "least_loaded", "Round-Robin"]
)
def test_llm_strategies_are_spelled_like_the_router_reads_them(strategy: str) -> None:
    assert check(MINIMAL + f"llm:\n  strategy: {strategy}\n").warnings == ()


# --- T36 (organism spec section 8) ----------------------------------------------------


def test_scalar_peers_are_an_error() -> None:
    text = with_listener(
        "- name: b\n  payload_class: TextInput\n  handler: builtin:llm\n  description: B.\n  agent: true\n  prompt: p\n  peers: a\n"
    )

    issue = only(check(text), "peers-not-a-list")
    assert "substring" in issue.message
    assert "write peers: [a]" in issue.message
    assert (issue.line, issue.column, issue.listener) == (14, 12, "b")


def test_an_unknown_top_level_key_loads_with_a_warning() -> None:
    report = check(MINIMAL + "foo: bar\n")

    assert report.ok
    issue = only(report, "unknown-key")
    assert "'foo'" in issue.message
    assert (issue.line, issue.column, issue.field) == (8, 1, "foo")


@pytest.mark.parametrize("where", ["top", "organism"])
def test_concurrency_keys_are_accepted_in_both_places(where: str) -> None:
    settings = "max_concurrent_handlers: 7\nmax_concurrent_per_agent: 2\n"
    if where == "top":
        text = MINIMAL + settings
    else:
        text = MINIMAL.replace(
            "  name: demo\n", "  name: demo\n" + textwrap.indent(settings, "  ")
        )

    organism = load_organism(text)

    assert (organism.max_concurrent_handlers, organism.max_concurrent_per_agent) == (
        7,
        2,
    )


def test_the_same_concurrency_key_with_two_values_is_an_error() -> None:
    text = MINIMAL.replace(
        "  name: demo\n", "  name: demo\n  max_concurrent_handlers: 3\n"
    )
    text += "max_concurrent_handlers: 4\n"

    issue = only(check(text), "conflicting-setting")
    assert "4 at the top level (line 9)" in issue.message
    assert "3 under organism (line 3)" in issue.message


def test_the_same_value_in_both_places_is_fine() -> None:
    text = MINIMAL.replace(
        "  name: demo\n", "  name: demo\n  max_concurrent_handlers: 3\n"
    )

    assert check(text + "max_concurrent_handlers: 3\n").issues == ()


@pytest.mark.parametrize("value", ["0", "-1", "'ten'", "2.5", "true"])
def test_concurrency_caps_must_be_positive_whole_numbers(value: str) -> None:
    issue = only(
        check(MINIMAL + f"max_concurrent_per_agent: {value}\n"), "invalid-value"
    )

    assert issue.field == "max_concurrent_per_agent"


def test_an_unknown_thread_scheduling_is_only_a_warning() -> None:
    assert (
        only(check(MINIMAL + "thread_scheduling: random\n"), "ignored-value").severity
        == "warning"
    )


# --- handlers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kind", ["llm", "http", "branch", "transform", "output", "loop", "echo"]
)
def test_every_builtin_handler_is_accepted(kind: str) -> None:
    assert check(MINIMAL.replace("builtin:echo", f"builtin:{kind}")).ok


def test_code_is_not_a_builtin_it_is_webassembly() -> None:
    issue = only(
        check(MINIMAL.replace("builtin:echo", "builtin:code")), "unknown-builtin"
    )

    assert "wasm:<module>" in issue.message


def test_a_misspelt_builtin_gets_a_suggestion() -> None:
    issue = only(
        check(MINIMAL.replace("builtin:echo", "builtin:trasform")), "unknown-builtin"
    )

    assert "did you mean 'transform'?" in issue.message


@pytest.mark.parametrize(
    ("handler", "code"),
    [
        ("llm", "invalid-handler"),
        ("do the thing", "invalid-handler"),
        ("wasm:", "invalid-wasm-reference"),
        ("wasm:9lives", "invalid-wasm-reference"),
        ("wasm:calc@", "invalid-wasm-reference"),
        ("wasm:calc/Type", "invalid-wasm-reference"),
        ("pkg.mod.func", "python-not-allowed"),
    ],
)
def test_handler_references_that_are_refused(handler: str, code: str) -> None:
    report = check(MINIMAL.replace("builtin:echo", repr(handler)))

    assert codes(report) == [code]


def test_a_bare_builtin_kind_suggests_the_prefix() -> None:
    issue = only(check(MINIMAL.replace("builtin:echo", "llm")), "invalid-handler")

    assert "did you mean 'builtin:llm'?" in issue.message


@pytest.mark.parametrize(
    "handler", ["wasm:calc", "wasm:calc@1.2.3", "wasm:acme.tools-v2@latest"]
)
def test_webassembly_handlers(handler: str) -> None:
    assert check(MINIMAL.replace("builtin:echo", handler)).ok


def test_the_wasm_resolver_decides_which_modules_exist() -> None:
    asked: list[tuple[str, str | None]] = []

    def resolve(name: str, version: str | None) -> WasmModule | None:
        asked.append((name, version))
        return (
            WasmModule(name=name, version=version, types=frozenset({"Sum"}))
            if name == "calc"
            else None
        )

    policy = HandlerPolicy(resolve_wasm=resolve)
    text = with_listener(
        "- name: c\n  payload_class: wasm:calc/Sum\n  handler: wasm:calc@2\n  description: C.\n"
        "- name: d\n  payload_class: wasm:calc/Product\n  handler: wasm:nope\n  description: D.\n"
    )

    report = check(text, policy)

    assert codes(report) == ["unknown-payload-type", "unknown-wasm-module"]
    assert (
        "exports no payload type 'Product' (it exports: Sum)"
        in report.errors[0].message
    )
    assert "'nope'" in report.errors[1].message
    # Per listener: the handler, then the payload class.
    assert asked == [("calc", "2"), ("calc", None), ("nope", None), ("calc", None)]


def test_a_trusted_handler_must_be_async() -> None:
    report = check(MINIMAL.replace("builtin:echo", f"{FIXTURE}.greet_sync"), TRUSTED)

    assert "async def" in only(report, "handler-not-async").message


def test_an_async_callable_object_is_a_handler() -> None:
    assert check(
        MINIMAL.replace("builtin:echo", f"{FIXTURE}.callable_handler"), TRUSTED
    ).ok


def test_a_path_outside_the_trusted_prefixes_is_refused_naming_them() -> None:
    policy = HandlerPolicy(trusted_python_prefixes=("acme.flows", FIXTURE))

    issue = only(
        check(MINIMAL.replace("builtin:echo", "acme.flowsx.handle"), policy),
        "python-not-allowed",
    )

    assert "outside the trusted prefixes (acme.flows, " in issue.message


def test_trusted_prefixes_match_whole_module_names() -> None:
    policy = HandlerPolicy(trusted_python_prefixes=("acme.",))

    assert policy.trusts("acme.flows.x")
    assert policy.trusts("acme")
    assert not policy.trusts("acmex.flows")
    assert not HOSTED.trusts("acme.flows.x")


# --- payload types ------------------------------------------------------------------


def test_xml_pipelines_own_types_are_the_builtins() -> None:
    text = MINIMAL.replace("TextInput", "xml_pipeline.primitives.TextInput")

    organism = load_organism(text)

    assert organism.listeners[0].payload_type == "TextInput"
    assert organism.listeners[0].payload_source == "builtin"


def test_an_unknown_payload_type_suggests_a_declared_one() -> None:
    text = (
        MINIMAL.replace("TextInput", "Questin") + "payloads:\n  Question: {text: str}\n"
    )

    issue = only(check(text), "unknown-payload-type")
    assert "did you mean 'Question'?" in issue.message
    assert (issue.line, issue.column, issue.listener) == (5, 20, "a")


def test_a_trusted_payload_class_must_be_a_dataclass() -> None:
    report = check(MINIMAL.replace("TextInput", f"{FIXTURE}.NotADataclass"), TRUSTED)

    assert "is not a dataclass" in only(report, "payload-not-dataclass").message


@pytest.mark.parametrize(
    ("declaration", "code", "line"),
    [
        ("  question: {text: str}\n", "invalid-type-name", 9),
        ("  'Bad Name': {text: str}\n", "invalid-type-name", 9),
        ("  None: {text: str}\n", "invalid-type-name", 9),
        ("  Textinput: {text: str}\n", "duplicate-payload-type", 9),
        ("  Note: {text: str}\n  NOTE: {text: str}\n", "duplicate-payload-type", 10),
        ("  Note: {2nd: str}\n", "invalid-field-name", 9),
        ("  Note: {comment: str}\n", "invalid-field-name", 9),
        ("  Note:\n    no: str\n", "invalid-field-name", 10),
        ("  Note: {first_name: str, firstName: str}\n", "duplicate-field", 9),
        ("  Note: {text: string}\n", "invalid-type-expression", 9),
        ("  Note: {text: [str]}\n", "invalid-type-expression", 9),
        ("  Note: {text: 'list[str'}\n", "invalid-type-expression", 9),
        ("  Note:\n    text: str\n    author: Person\n", "unknown-type-reference", 11),
        ("  Note:\n", "invalid-type", 9),
        ("  A: {b: B}\n  B: {a: 'list[A]'}\n", "recursive-payload-type", 9),
    ],
)
def test_payload_declaration_errors(declaration: str, code: str, line: int) -> None:
    report = check(MINIMAL + "payloads:\n" + declaration)

    issue = only(report, code)
    assert issue.line == line
    assert issue.field is not None and issue.field.startswith("payloads.")


def test_a_type_error_names_the_field_and_the_problem() -> None:
    issue = only(
        check(MINIMAL + "payloads:\n  Note:\n    when: Optional[str]\n"),
        "invalid-type-expression",
    )

    assert issue.message == (
        "The type 'Optional[str]' of field 'when' of payload type 'Note' is not valid: "
        "there is no type 'Optional'; write T | None."
    )
    assert (issue.line, issue.column, issue.field) == (10, 11, "payloads.Note.when")


def test_declared_field_order_is_kept() -> None:
    text = (
        MINIMAL
        + "payloads:\n  Note:\n    zeta: int\n    alpha: str\n    mid: 'bool | None'\n"
    )

    note = load_organism(text).payload("Note")

    assert note is not None
    assert [f.name for f in note.fields] == ["zeta", "alpha", "mid"]
    assert [f.line for f in note.fields] == [10, 11, 12]


def test_a_type_without_fields_is_allowed() -> None:
    assert check(MINIMAL + "payloads:\n  Ping: {}\n").ok


# --- names and entry ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("1st", "invalid-name"),
        ("has space", "invalid-name"),
        ("system.boot", "reserved-name"),
        ("SYSTEM", "reserved-name"),
    ],
)
def test_listener_names(name: str, code: str) -> None:
    issue = only(check(MINIMAL.replace("name: a", f"name: {name!r}")), code)

    assert (issue.line, issue.field) == (4, "listeners[0].name")


@pytest.mark.parametrize("name", ["my flow", "flow.v2", "-x", 42])
def test_organism_names(name: object) -> None:
    report = check(MINIMAL.replace("name: demo", f"name: {name!r}"))

    assert codes(report) in (["invalid-name"], ["invalid-type"])


def test_entry_names_a_listener_ignoring_case() -> None:
    text = with_listener(
        "- name: Second\n  payload_class: TextInput\n  handler: builtin:echo\n  description: B.\n"
    )

    assert load_organism(text + "entry: second\n").entry == "Second"
    assert (
        load_organism(
            text.replace("  name: demo\n", "  name: demo\n  entry: SECOND\n")
        ).entry
        == "Second"
    )


def test_an_entry_that_names_no_listener() -> None:
    issue = only(check(MINIMAL + "entry: b\n"), "unknown-entry")

    assert (issue.line, issue.column, issue.field) == (8, 8, "entry")


def test_entry_in_two_places_must_agree() -> None:
    text = (
        MINIMAL.replace("  name: demo\n", "  name: demo\n  entry: a\n") + "entry: b\n"
    )

    assert codes(check(text)) == ["conflicting-setting"]


def test_no_listeners_is_a_warning_and_no_entry() -> None:
    report = check("organism: {name: empty}\n")

    assert only(report, "no-listeners").severity == "warning"
    assert report.organism is not None
    assert report.organism.entry is None


# --- peers -------------------------------------------------------------------------------


def test_the_name_and_type_peer_form_is_refused() -> None:
    text = with_listener(
        "- name: b\n  payload_class: TextInput\n  handler: builtin:llm\n  description: B.\n  agent: true\n  prompt: p\n  peers: [a.TextInput]\n"
    )

    issue = only(check(text), "typed-peer")
    assert "list the listener name 'a' instead" in issue.message


def test_a_dotted_peer_that_names_a_dotted_listener_is_fine() -> None:
    text = with_listener(
        "- name: calc.add\n  payload_class: TextInput\n  handler: builtin:echo\n  description: C.\n"
        "- name: b\n  payload_class: TextInput\n  handler: builtin:echo\n  description: B.\n  peers: [calc.add]\n"
    )

    assert codes(check(text)) == ["dotted-name"]


@pytest.mark.parametrize("peers", ["[a, 3]", "[a, null]", "[a, '']", "[a, [b]]"])
def test_peers_must_be_names(peers: str) -> None:
    report = check(
        MINIMAL.replace(
            "description: Echoes.", f"description: Echoes.\n    peers: {peers}"
        )
    )

    assert only(report, "invalid-peer").field == "listeners[0].peers[1]"


# --- warnings ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "key",
    [
        "model",
        "temperature",
        "max_tokens",
        "allowed_tools",
        "blocked_tools",
        "tool",
        "gateway",
        "verbose",
        "confirm_actions",
        "metadata",
    ],
)
def test_keys_xml_pipeline_ignores_are_warned_and_kept(key: str) -> None:
    text = MINIMAL.replace(
        "description: Echoes.", f"description: Echoes.\n    {key}: 1"
    )

    report = check(text)

    issue = only(report, "ignored-key")
    assert f"'{key}'" in issue.message
    assert (issue.line, issue.column, issue.listener, issue.field) == (
        8,
        5,
        "a",
        f"listeners[0].{key}",
    )
    assert report.organism is not None
    assert report.organism.listeners[0].extras == {key: 1}


def test_an_unknown_listener_key_is_named_with_a_suggestion() -> None:
    issue = only(
        check(
            MINIMAL.replace(
                "description: Echoes.", "description: Echoes.\n    peer: [a]"
            )
        ),
        "unknown-key",
    )

    assert "'peer'" in issue.message and "did you mean 'peers'?" in issue.message
    assert issue.listener == "a"


def test_a_boolean_key_tells_to_quote_it() -> None:
    issue = only(check(MINIMAL + "yes: 1\n"), "unknown-key")

    assert "quote it" in issue.message


@pytest.mark.parametrize(
    ("key", "code"),
    [
        ("server", "ignored-key"),
        ("auth", "ignored-key"),
        ("llm_backends", "ignored-key"),
        ("gateways", "ignored-key"),
    ],
)
def test_top_level_keys_the_runtime_never_read(key: str, code: str) -> None:
    assert only(check(MINIMAL + f"{key}: {{}}\n"), code).field == key


def test_organism_port_and_identity_are_ignored() -> None:
    report = check(
        MINIMAL.replace(
            "  name: demo\n", "  name: demo\n  port: 8765\n  identity: key.pem\n"
        )
    )

    assert codes(report) == ["ignored-key", "ignored-key"]


def test_broadcast_has_no_effect() -> None:
    issue = only(
        check(
            MINIMAL.replace(
                "description: Echoes.", "description: Echoes.\n    broadcast: true"
            )
        ),
        "broadcast-no-effect",
    )

    assert (issue.line, issue.column) == (8, 5)


def test_a_dotted_listener_name_is_a_warning() -> None:
    issue = only(check(MINIMAL.replace("name: a", "name: calc.add")), "dotted-name")

    assert "splits call chains on dots" in issue.message


def test_an_agent_without_prompt_and_a_prompt_without_agent() -> None:
    agent = check(
        MINIMAL.replace("description: Echoes.", "description: Echoes.\n    agent: true")
    )
    prompt = check(
        MINIMAL.replace(
            "description: Echoes.", "description: Echoes.\n    prompt: Be nice."
        )
    )

    assert only(agent, "agent-without-prompt").line == 8
    assert only(prompt, "prompt-without-agent").line == 8


def test_numbers_where_text_belongs_are_taken_as_text_with_a_warning() -> None:
    report = check(
        MINIMAL.replace("Echoes.", "1.10").replace(
            "name: demo", "name: demo\n  version: 2.0"
        )
    )

    assert codes(report) == ["not-text", "not-text"]
    assert report.organism is not None
    assert report.organism.version == "2.0"
    assert report.organism.listeners[0].description == "1.1"


def test_llm_warnings() -> None:
    text = (
        MINIMAL
        + "llm:\n  backends:\n    - provider: xai\n      api_key: sk-secret\n    - provider: xai\n  cache: true\n"
    )

    report = check(text)

    assert report.ok
    assert sorted(codes(report)) == [
        "llm-duplicate-backend",
        "llm-inline-secret",
        "unknown-key",
    ]


# --- value checks ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "code"),
    [
        ("agent: 'false'", "invalid-type"),
        ("agent: 1", "invalid-type"),
        ("timeout_seconds: 0", "invalid-value"),
        ("timeout_seconds: -3", "invalid-value"),
        ("timeout_seconds: .nan", "invalid-value"),
        ("timeout_seconds: 'soon'", "invalid-value"),
        ("prompt: [a]", "invalid-type"),
    ],
)
def test_listener_option_values(option: str, code: str) -> None:
    report = check(
        MINIMAL.replace("description: Echoes.", f"description: Echoes.\n    {option}")
    )

    issue = only(report, code)
    assert (issue.line, issue.listener) == (8, "a")


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("handler: 3", "invalid-type"),
        ("payload_class: [TextInput]", "invalid-type"),
        ("description: null", "invalid-type"),
    ],
)
def test_required_fields_of_the_wrong_type(value: str, code: str) -> None:
    key = value.split(":")[0]
    original = {
        "handler": "handler: builtin:echo",
        "payload_class": "payload_class: TextInput",
        "description": "description: Echoes.",
    }[key]

    assert codes(check(MINIMAL.replace(original, value))) == [code]


@pytest.mark.parametrize(
    "llm",
    [
        "llm: [a]\n",
        "llm:\n  retries: -1\n",
        "llm:\n  retry_base_delay: soon\n",
        "llm:\n  strategy: 3\n",
        "llm:\n  backends: {provider: xai}\n",
        "llm:\n  backends: [xai]\n",
        "llm:\n  backends:\n    - provider: xai\n      priority: high\n",
    ],
)
def test_llm_values(llm: str) -> None:
    report = check(MINIMAL + llm)

    assert len(report.errors) == 1
    assert report.errors[0].field is not None and report.errors[0].field.startswith(
        "llm"
    )


def test_a_listener_entry_that_is_not_a_mapping() -> None:
    issue = only(check(MINIMAL + "  - just a name\n"), "invalid-type")

    assert (issue.line, issue.field) == (8, "listeners[1]")


# --- robustness -------------------------------------------------------------------------------


def test_yaml_refusals_become_single_errors() -> None:
    report = check("a: &x 1\nb: *x\n")

    assert codes(report) == ["yaml-anchor"]
    assert report.organism is None
    assert (report.errors[0].line, report.errors[0].column) == (1, 4)


@pytest.mark.parametrize(
    "text",
    [
        "organism: []\nlisteners: 3\n",
        "organism: {name: x}\nlisteners: [[], null, 3, {}]\n",
        "organism: {name: x}\npayloads: [a]\n",
        "organism: {name: x}\npayloads: {A: {b: 'dict[int, str]'}}\n",
        "organism: {name: x}\nentry: [a]\nlisteners: []\n",
        "organism: {name: null, version: [1]}\n",
        "? !!null ''\n: 1\norganism: {name: x}\n",
        "1: 2\n",
    ],
)
def test_odd_documents_give_issues_not_exceptions(text: str) -> None:
    report = check(text)

    assert "validator-failed" not in codes(report)
    assert report.issues


def test_a_wrongly_typed_organism_is_one_error() -> None:
    assert codes(check("organism: [a]\nlisteners: []\n")) == [
        "invalid-type",
        "no-listeners",
    ]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_mutated_flows_never_raise(data: st.DataObject) -> None:
    """E2: mutated documents give issues, never exceptions or validator failures."""
    lines = VALID.splitlines(keepends=True)
    for _ in range(data.draw(st.integers(1, 4))):
        index = data.draw(st.integers(0, len(lines) - 1))
        action = data.draw(st.sampled_from(["drop", "duplicate", "replace", "cut"]))
        if action == "drop":
            del lines[index]
        elif action == "duplicate":
            lines.insert(index, lines[index])
        elif action == "cut":
            lines[index] = lines[index][: data.draw(st.integers(0, len(lines[index])))]
        else:
            lines[index] = data.draw(
                st.sampled_from(
                    [
                        "  - name: x\n",
                        "peers: b\n",
                        "    &a *a\n",
                        "!!python/none\n",
                        "\t\n",
                    ]
                )
                | st.text(max_size=20)
            )
        if not lines:
            lines = [""]
    report = validate_organism("".join(lines), policy=TRUSTED)

    assert "validator-failed" not in codes(report)
    for issue in report.issues:
        assert ISSUE_CODES[issue.code] == issue.severity


def test_issues_beyond_the_listing_cap_are_counted() -> None:
    text = MINIMAL + "".join(f"extra{i}: 1\n" for i in range(130))

    report = check(text)

    assert report.ok
    assert len(report.warnings) == 101
    assert "30 more warnings" in only(report, "too-many-issues").message


def test_a_large_flow_validates_quickly() -> None:
    """E2 asks for at most 100 ms per parse and validation; allow for slow CI."""
    listeners = "".join(
        f"  - name: l{i}\n    payload_class: Note\n    handler: builtin:llm\n"
        f"    description: Listener {i}.\n    agent: true\n    prompt: Be brief.\n"
        f"    peers: [l{i + 1}, l{i + 2}]\n"
        for i in range(400)
    )
    text = (
        "organism: {name: big}\npayloads:\n  Note: {text: str}\nlisteners:\n"
        + listeners
    )
    validate_organism(text)  # warm up

    started = time.perf_counter()
    report = validate_organism(text)
    elapsed = time.perf_counter() - started

    assert len(text) > 60_000
    assert [i.code for i in report.issues] == ["unknown-peer"] * 3
    assert elapsed < 1.0


@pytest.mark.parametrize(
    "reference", ["'not a type'", "wasm:calc/lowercase", "wasm:calc", "'wasm:/X'"]
)
def test_payload_references_that_are_not_references(reference: str) -> None:
    issue = only(
        check(MINIMAL.replace("TextInput", reference)), "invalid-payload-class"
    )

    assert issue.field == "listeners[0].payload_class"


def test_a_validator_bug_becomes_an_issue(monkeypatch: pytest.MonkeyPatch) -> None:
    from nextra.domain.flows import validate

    def explode(self: object) -> None:
        raise KeyError("boom")

    monkeypatch.setattr(validate._Checker, "run", explode)

    report = check(MINIMAL)

    assert codes(report) == ["validator-failed"]
    assert "KeyError" in report.errors[0].message
