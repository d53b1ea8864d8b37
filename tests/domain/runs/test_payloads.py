"""validate_payload and payload_size: payloads as JSON-shaped data checked by type."""

from __future__ import annotations

import math
from typing import Any

import pytest

from nextra.domain.flows import Organism, load_organism
from nextra.domain.flows.catalogue import BUILTIN_PAYLOADS
from nextra.domain.flows.model import PayloadField, PayloadType, TypeRef
from nextra.domain.runs.payloads import (
    PayloadInvalid,
    payload_size,
    resolve_payload_type,
    validate_payload,
)
from nextra.kernel.errors import ValidationError

FLOW = """\
organism:
  name: payloads
payloads:
  Pair:
    a: int
    b: int
  Order:
    id: str
    total: float
    paid: bool
    items: list[Item]
    notes: str | None
    tags: dict[str, str]
  Item:
    sku: str
    qty: int
  Wrapped:
    reply: TextOutput
listeners:
  - name: p
    payload_class: Pair
    handler: builtin:echo
    description: Echoes pairs.
"""


@pytest.fixture(scope="module")
def organism() -> Organism:
    return load_organism(FLOW)


def check(organism: Organism, name: str, data: object) -> dict[str, Any]:
    payload_type = resolve_payload_type(name, organism)
    assert payload_type is not None
    return validate_payload(data, payload_type, organism)


def refusal(organism: Organism, name: str, data: object) -> PayloadInvalid:
    with pytest.raises(PayloadInvalid) as caught:
        check(organism, name, data)
    return caught.value


def order(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "007",
        "total": 12.5,
        "paid": True,
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "notes": None,
        "tags": {"channel": "web"},
    }
    data.update(changes)
    return data


def test_a_fitting_payload_comes_back_equal(organism: Organism) -> None:
    assert check(organism, "Pair", {"a": 1, "b": 2}) == {"a": 1, "b": 2}
    assert check(organism, "Order", order()) == order()


def test_the_result_is_a_copy_in_declaration_order(organism: Organism) -> None:
    data = {"b": 2, "a": 1}
    checked = check(organism, "Pair", data)
    assert list(checked) == ["a", "b"]
    assert checked is not data


def test_a_missing_field_is_named_with_its_type(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": 1})
    assert str(error) == "Pair.b: missing"
    assert error.where == "b"
    assert error.expected == "int"


def test_a_wrong_type_says_what_was_expected_and_found(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": "one", "b": 2})
    assert str(error) == "Pair.a: expected int, got str 'one'"
    assert (error.where, error.expected, error.got) == ("a", "int", "str")


def test_an_extra_field_is_refused(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": 1, "b": 2, "c": 3})
    assert str(error) == "Pair.c: unexpected field (Pair has a, b)"
    assert error.where == "c"


@pytest.mark.parametrize("value", [True, False])
def test_bool_is_not_an_int(organism: Organism, value: bool) -> None:
    error = refusal(organism, "Pair", {"a": value, "b": 2})
    assert str(error) == f"Pair.a: expected int, got bool {value!r}"


def test_bool_is_not_a_float(organism: Organism) -> None:
    error = refusal(organism, "Order", order(total=True))
    assert str(error) == "Order.total: expected float, got bool True"


def test_an_int_is_accepted_for_a_float_and_becomes_one(organism: Organism) -> None:
    checked = check(organism, "Order", order(total=12))
    assert checked["total"] == 12.0
    assert isinstance(checked["total"], float)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_float_must_be_finite_because_json_cannot_carry_it(
    organism: Organism, value: float
) -> None:
    error = refusal(organism, "Order", order(total=value))
    assert str(error).startswith("Order.total: expected a finite float")


def test_a_float_is_not_an_int(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": 1.0, "b": 2})
    assert str(error) == "Pair.a: expected int, got float 1.0"


@pytest.mark.parametrize("text", ["007", "true", "1.50", "NaN", "", " spaced "])
def test_strings_come_back_verbatim(organism: Organism, text: str) -> None:
    checked = check(organism, "Order", order(id=text, tags={"k": text}))
    assert checked["id"] == text
    assert checked["tags"] == {"k": text}


def test_a_number_is_not_a_string(organism: Organism) -> None:
    error = refusal(organism, "Order", order(id=7))
    assert str(error) == "Order.id: expected str, got int 7"


def test_paths_reach_into_lists_of_named_types(organism: Organism) -> None:
    items = [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": "x"}]
    error = refusal(organism, "Order", order(items=items))
    assert str(error) == "Order.items[1].qty: expected int, got str 'x'"
    assert error.where == "items[1].qty"


def test_a_missing_field_of_a_nested_type_is_named(organism: Organism) -> None:
    error = refusal(organism, "Order", order(items=[{"sku": "A-1"}]))
    assert str(error) == "Order.items[0].qty: missing"


def test_paths_reach_into_dicts(organism: Organism) -> None:
    error = refusal(organism, "Order", order(tags={"channel": 3}))
    assert str(error) == "Order.tags['channel']: expected str, got int 3"


def test_a_list_field_must_be_a_list(organism: Organism) -> None:
    error = refusal(organism, "Order", order(items={"sku": "A-1"}))
    assert str(error) == "Order.items: expected list[Item], got dict"


def test_a_named_field_must_be_an_object(organism: Organism) -> None:
    error = refusal(organism, "Order", order(items=["A-1"]))
    assert (
        str(error) == "Order.items[0]: expected an object of type Item, got str 'A-1'"
    )


def test_optional_fields_take_none_or_the_type(organism: Organism) -> None:
    assert check(organism, "Order", order(notes="fragile"))["notes"] == "fragile"
    error = refusal(organism, "Order", order(notes=5))
    assert str(error) == "Order.notes: expected str | None, got int 5"


def test_optional_fields_are_still_required(organism: Organism) -> None:
    data = order()
    del data["notes"]
    assert str(refusal(organism, "Order", data)) == "Order.notes: missing"


def test_a_payload_must_be_an_object(organism: Organism) -> None:
    error = refusal(organism, "Pair", [1, 2])
    assert str(error) == "Pair: expected an object of type Pair, got list"
    assert error.where is None


def test_field_names_must_be_text(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": 1, "b": 2, 3: 4})
    assert str(error) == "Pair: field names must be text, got int 3"


def test_built_in_types_are_checked_by_their_catalogue_fields() -> None:
    text_output = BUILTIN_PAYLOADS["TextOutput"]
    data = {"text": "hi", "status": "ok"}
    assert validate_payload(data, text_output, None) == data
    with pytest.raises(PayloadInvalid, match=r"^TextOutput\.status: missing$"):
        validate_payload({"text": "hi"}, text_output, None)


def test_named_fields_may_be_built_in_types(organism: Organism) -> None:
    data = {"reply": {"text": "hi", "status": "ok"}}
    assert check(organism, "Wrapped", data) == data
    error = refusal(organism, "Wrapped", {"reply": {"text": "hi"}})
    assert str(error) == "Wrapped.reply.status: missing"


def test_an_unknown_named_type_is_reported_not_raised_as_a_crash() -> None:
    payload_type = load_organism(FLOW).payload("Order")
    assert payload_type is not None
    # Without the flow, Item cannot be resolved.
    with pytest.raises(PayloadInvalid, match="neither declared in the flow nor built"):
        validate_payload(order(), payload_type, None)


def test_declared_types_win_over_built_in_ones_of_the_same_name() -> None:
    # The validator refuses such a flow; resolution still prefers the flow's own.
    declared = PayloadType(
        name="TextOutput",
        fields=(PayloadField(name="body", type=TypeRef(kind="str")),),
    )
    organism = Organism(name="shadowing", payloads=(declared,))
    resolved = resolve_payload_type("TextOutput", organism)
    assert resolved is not None
    assert resolved.source == "declared"
    assert resolve_payload_type("TextOutput", None) is BUILTIN_PAYLOADS["TextOutput"]
    assert resolve_payload_type("Nothing", organism) is None


@pytest.mark.parametrize("source", ["python", "wasm"])
def test_python_and_wasm_types_accept_any_object(source: Any) -> None:
    payload_type = PayloadType(name="Greeting", source=source)
    data = {"name": "Ada", "anything": [1, {"x": None}]}
    assert validate_payload(data, payload_type, None) == data
    with pytest.raises(PayloadInvalid, match=r"^Greeting: expected an object"):
        validate_payload("Ada", payload_type, None)


def test_payload_invalid_is_a_validation_error(organism: Organism) -> None:
    error = refusal(organism, "Pair", {})
    assert isinstance(error, ValidationError)
    assert error.code == "payload-invalid"


def test_long_values_are_shortened_in_messages(organism: Organism) -> None:
    error = refusal(organism, "Pair", {"a": "x" * 500, "b": 1})
    assert len(str(error)) < 80


def test_payload_size_is_compact_json_bytes() -> None:
    assert payload_size({"a": 1, "b": "é"}) == len(b'{"a":1,"b":"\xc3\xa9"}')
    assert payload_size({}) == 2
