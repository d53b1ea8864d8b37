"""nextra.sdk: what handler authors import."""

from __future__ import annotations

import dataclasses

import pytest

from nextra import sdk
from nextra.domain.runs import builtin_payloads, contract


def test_it_reexports_the_contract_and_built_in_types() -> None:
    assert sdk.HandlerResponse is contract.HandlerResponse
    assert sdk.HandlerMetadata is contract.HandlerMetadata
    assert sdk.ThreadMessage is contract.ThreadMessage
    assert sdk.TextInput is builtin_payloads.TextInput
    assert sdk.TextOutput is builtin_payloads.TextOutput
    assert sdk.SystemError is builtin_payloads.SystemError


def test_payload_makes_a_dataclass() -> None:
    @sdk.payload
    class Greeting:
        name: str
        times: int = 1

    greeting = Greeting(name="Ada")
    assert dataclasses.is_dataclass(greeting)
    assert [f.name for f in dataclasses.fields(Greeting)] == ["name", "times"]
    greeting.times = 2
    assert greeting == Greeting("Ada", 2)


def test_payload_can_make_a_frozen_dataclass() -> None:
    @sdk.payload(frozen=True)
    class Greeting:
        name: str

    with pytest.raises(dataclasses.FrozenInstanceError):
        Greeting("Ada").name = "Bob"  # type: ignore[misc]


def test_a_payload_type_name_must_be_pascal_case() -> None:
    with pytest.raises(TypeError, match="must be PascalCase"):

        @sdk.payload
        class snake_case:  # noqa: N801 - the name under test
            text: str
