"""Payload field type expressions: what parses, its canonical spelling, and refusals."""

from __future__ import annotations

import pytest

from nextra.domain.flows.model import TypeRef
from nextra.domain.flows.typeexpr import (
    TypeExpressionError,
    named_refs,
    parse_type_expression,
)


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("str", "str"),
        ("int", "int"),
        ("float", "float"),
        ("bool", "bool"),
        ("list[str]", "list[str]"),
        ("dict[str, int]", "dict[str, int]"),
        ("dict[str,list[Address]]", "dict[str, list[Address]]"),
        ("str | None", "str | None"),
        ("None | Address", "Address | None"),
        ("list[ int | None ]", "list[int | None]"),
        ("list[str] | None", "list[str] | None"),
        ("Address", "Address"),
    ],
)
def test_valid_expressions_and_their_canonical_spelling(
    text: str, canonical: str
) -> None:
    assert str(parse_type_expression(text)) == canonical


def test_the_parsed_structure() -> None:
    assert parse_type_expression("list[Address | None]") == TypeRef(
        kind="list",
        item=TypeRef(kind="optional", item=TypeRef(kind="named", name="Address")),
    )


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "the type is empty"),
        ("string", "there is no type 'string'; write str"),
        ("List[str]", "there is no type 'List'; write list[T]"),
        ("Optional[int]", "there is no type 'Optional'; write T | None"),
        ("address", "there is no type 'address'"),
        ("list", "expected '[' but found the end"),
        ("list[]", "expected a type but found ']'"),
        ("list[str", "expected ']' but found the end"),
        ("dict[int, str]", "dictionary keys must be str, not 'int'"),
        ("dict[str]", "expected ',' but found ']'"),
        ("str[int]", "'str' takes no type arguments"),
        ("None", "None alone is not a field type"),
        ("int | str", "the only union allowed is T | None"),
        ("int | None | None", "the only union allowed is T | None"),
        ("str str", "unexpected 'str' after 'str'"),
        ("str!", "unexpected character '!'"),
        ("list[" * 20 + "str" + "]" * 20, "nested more than 16 levels"),
    ],
)
def test_invalid_expressions_say_why(text: str, problem: str) -> None:
    with pytest.raises(TypeExpressionError) as caught:
        parse_type_expression(text)

    assert problem in str(caught.value)


def test_named_references_are_listed() -> None:
    ref = parse_type_expression("dict[str, list[Address | None]]")

    assert list(named_refs(ref)) == ["Address"]
