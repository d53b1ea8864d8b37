"""Finding NUL characters in JSON, which the read models cannot store."""

from __future__ import annotations

import msgspec

from nextra.kernel.text import json_has_nul


def test_a_nul_in_any_string_or_key_is_found() -> None:
    for value in ("a\x00b", {"k": ["x", {"deep": "\x00"}]}, {"k\x00": 1}):
        assert json_has_nul(msgspec.json.encode(value))


def test_the_six_characters_of_an_escape_are_text_not_a_nul() -> None:
    assert not json_has_nul(msgspec.json.encode({"text": "\\u0000", "n": 0}))
