"""The built-in payload dataclasses match the catalogue's types field for field."""

from __future__ import annotations

import dataclasses
import typing

import pytest

from nextra.domain.flows.catalogue import BUILTIN_PAYLOADS
from nextra.domain.runs import builtin_payloads
from nextra.domain.runs.builtin_payloads import BUILTIN_PAYLOAD_CLASSES

_PYTHON_TYPES = {"str": str, "int": int, "float": float, "bool": bool}


@pytest.mark.parametrize("name", sorted(BUILTIN_PAYLOAD_CLASSES))
def test_fields_names_order_and_types_match_the_catalogue(name: str) -> None:
    cls = BUILTIN_PAYLOAD_CLASSES[name]
    assert cls.__name__ == name
    hints = typing.get_type_hints(cls)
    fields = [(f.name, hints[f.name]) for f in dataclasses.fields(cls)]
    expected = [
        (f.name, _PYTHON_TYPES[f.type.kind]) for f in BUILTIN_PAYLOADS[name].fields
    ]
    assert fields == expected


def test_xml_pipelines_three_types_have_classes() -> None:
    assert set(BUILTIN_PAYLOAD_CLASSES) == {"TextInput", "TextOutput", "SystemError"}
    assert builtin_payloads.SystemError("routing", "no route").retry_allowed is True
