"""The YAML reader: plain data with positions, and every unsafe construct refused."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from nextra.domain.flows import yamlsafe
from nextra.domain.flows.yamlsafe import Mark, YamlLimits, YamlRefused, parse_yaml

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


@pytest.fixture(params=["libyaml", "python"], autouse=True)
def parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """Every rule holds for libyaml's parser and for PyYAML's pure-Python one."""
    if request.param == "libyaml" and not yamlsafe._USE_LIBYAML:
        pytest.skip("PyYAML was built without libyaml")
    saved = yamlsafe._USE_LIBYAML
    yamlsafe._USE_LIBYAML = request.param == "libyaml"
    try:
        yield request.param
    finally:
        yamlsafe._USE_LIBYAML = saved


def refused(text: str, **limits: int) -> YamlRefused:
    with pytest.raises(YamlRefused) as caught:
        parse_yaml(text, limits=YamlLimits(**limits))
    return caught.value


def test_plain_data_with_the_meaning_safe_load_gives() -> None:
    document = parse_yaml(
        "organism:\n"
        "  name: demo\n"
        "  version: 1.0\n"
        "flags: [yes, off, ~, 0x1F, 1_000, 2.5, '007']\n"
        "released: 2024-01-01\n"
    )

    assert document.data == {
        "organism": {"name": "demo", "version": 1.0},
        "flags": [True, False, None, 31, 1000, 2.5, "007"],
        "released": "2024-01-01",  # dates stay text
    }


def test_positions_of_keys_and_values_count_from_one() -> None:
    document = parse_yaml(
        "organism:\n  name: demo\nlisteners:\n  - name: a\n    peers: [b, c]\n"
    )

    assert document.keys[("organism", "name")] == Mark(line=2, column=3)
    assert document.values[("organism", "name")] == Mark(line=2, column=9)
    assert document.values[("listeners", 0)] == Mark(line=4, column=5)
    assert document.keys[("listeners", 0, "peers")] == Mark(line=5, column=5)
    assert document.values[("listeners", 0, "peers", 1)] == Mark(line=5, column=16)
    # A path that was never written falls back to its closest parent.
    assert document.key_mark(("listeners", 0, "missing")) == Mark(line=4, column=5)


def test_billion_laughs_is_refused_at_its_first_anchor_and_fast() -> None:
    started = time.perf_counter()
    error = refused(BILLION_LAUGHS)

    assert time.perf_counter() - started < 0.5
    assert error.reason == "yaml-anchor"
    assert error.mark == Mark(line=1, column=4)
    assert "&a" in error.message
    assert "billion laughs" in error.message


def test_an_alias_is_refused_with_its_line() -> None:
    error = refused("a: 1\nb: *x\n")

    assert error.reason == "yaml-alias"
    assert error.mark == Mark(line=2, column=4)
    assert "*x" in error.message


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        (
            "a: !!python/object/apply:os.system ['echo pwned']\n",
            "!!python/object/apply",
        ),
        ("a: !!python/name:os.system\n", "!!python/name:os.system"),
        ("a: !custom thing\n", "!custom"),
        ("a: !!set {x: null}\n", "!!set"),
        ("a: !!binary aGVsbG8=\n", "!!binary"),
        ("a: !!timestamp 2024-01-01\n", "!!timestamp"),
        ("%TAG !e! tag:example.com,2024:\n---\na: !e!thing x\n", "tag:example.com"),
    ],
)
def test_tags_other_than_plain_data_are_refused(text: str, shown: str) -> None:
    error = refused(text)

    assert error.reason == "yaml-tag"
    assert shown in error.message
    assert error.mark is not None
    assert error.mark.line == text.count("\n", 0, text.index("a: !")) + 1


def test_standard_tags_are_accepted() -> None:
    document = parse_yaml("a: !!str 007\nb: !!int '12'\nc: !!map {x: !!seq [1]}\n")

    assert document.data == {"a": "007", "b": 12, "c": {"x": [1]}}


def test_a_standard_tag_on_a_value_that_does_not_fit_is_refused() -> None:
    error = refused("a: !!int twelve\n")

    assert error.reason == "yaml-bad-scalar"
    assert "'twelve' is not a valid int" in error.message


def test_an_oversized_document_names_the_limit_and_the_size() -> None:
    text = "a: " + "x" * (256 * 1024) + "\n"

    error = refused(text)

    assert error.reason == "yaml-too-large"
    assert "256.0 KiB (262144 bytes)" in error.message
    assert f"({len(text)} bytes)" in error.message


def test_the_size_is_counted_in_utf8_bytes() -> None:
    error = refused("a: " + "é" * 60 + "\n", max_bytes=100)

    assert error.reason == "yaml-too-large"
    assert "(124 bytes)" in error.message


def test_duplicate_keys_name_both_lines() -> None:
    error = refused("organism:\n  name: a\n  version: '1'\n  name: b\n")

    assert error.reason == "yaml-duplicate-key"
    assert error.mark == Mark(line=4, column=3)
    assert "'name' appears twice" in error.message
    assert "line 2 and on line 4" in error.message


def test_keys_that_are_equal_in_python_are_duplicates() -> None:
    assert refused("1: a\ntrue: b\n").reason == "yaml-duplicate-key"


def test_merge_keys_are_refused() -> None:
    error = refused("a:\n  <<: {b: 1}\n")

    assert error.reason == "yaml-merge-key"
    assert error.mark == Mark(line=2, column=3)


def test_a_quoted_merge_key_is_plain_text() -> None:
    assert parse_yaml("'<<': 1\n").data == {"<<": 1}


def test_a_list_as_a_key_is_refused() -> None:
    assert refused("? [a, b]\n: 1\n").reason == "yaml-complex-key"


@pytest.mark.parametrize(
    ("text", "line", "column"),
    [
        ("organism:\n  name: a\nlisteners: [1, 2\nllm: {}\n", 4, 4),
        ("a:\n  b: 1\n c: 2\n", 3, 2),
        ("a: 'unterminated\n", 2, 1),
        ("a: b: c\n", 1, 5),
        ("a:\n\t- b\n", 2, 1),
    ],
)
def test_malformed_yaml_names_the_parsers_line_and_column(
    text: str, line: int, column: int
) -> None:
    error = refused(text)

    assert error.reason == "yaml-syntax"
    assert error.mark == Mark(line=line, column=column)
    assert error.message.startswith("the text is not valid YAML: ")


def test_several_documents_are_refused() -> None:
    error = refused("organism: {name: a}\n---\norganism: {name: b}\n")

    assert error.reason == "yaml-multiple-documents"
    assert error.mark == Mark(line=2, column=1)


@pytest.mark.parametrize("text", ["", "   \n", "# only a comment\n", "---\n", "~\n"])
def test_an_empty_document_is_refused(text: str) -> None:
    error = refused(text)

    assert error.reason == "yaml-empty"
    assert "must be a YAML mapping" in error.message


@pytest.mark.parametrize(
    ("text", "found"),
    [("- a\n- b\n", "a list"), ("just text\n", "the text 'just text'"), ("42\n", "42")],
)
def test_a_top_level_that_is_not_a_mapping_is_refused(text: str, found: str) -> None:
    error = refused(text)

    assert error.reason == "yaml-not-a-mapping"
    assert found in error.message


def test_nesting_is_capped() -> None:
    error = refused("a: " + "[" * 70 + "]" * 70 + "\n")

    assert error.reason == "yaml-too-deep"
    assert "64 levels" in error.message


def test_the_number_of_nodes_is_capped() -> None:
    error = refused("a: [" + ", ".join(["1"] * 50) + "]\n", max_nodes=20)

    assert error.reason == "yaml-too-many-nodes"


@pytest.mark.parametrize("character", ["\x00", "\x07", "\ud800"])
def test_control_characters_and_lone_surrogates_are_refused(character: str) -> None:
    error = refused(f"a: 1\nb: x{character}y\n")

    assert error.reason == "yaml-invalid-character"
    assert error.mark == Mark(line=2, column=5)


def test_a_byte_order_mark_is_allowed() -> None:
    assert parse_yaml("\ufeffa: 1\n").data == {"a": 1}


def test_the_refusal_is_a_validation_error_with_a_place() -> None:
    error = refused("a: *x\n")

    assert error.code == "yaml-refused"
    assert error.fields() == {"where": "line 1, column 4"}
