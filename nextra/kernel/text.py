"""Text that Nextra cannot store: NUL characters, which PostgreSQL text refuses."""

from __future__ import annotations

from typing import Any

import msgspec

__all__ = ("json_has_nul",)


def json_has_nul(encoded: bytes) -> bool:
    """Whether a JSON document holds a NUL character (U+0000) in any string."""
    # JSON writes a NUL as \u0000: only a document with that sequence is walked,
    # since the same six characters may be text of its own.
    return b"\\u0000" in encoded and _holds_nul(msgspec.json.decode(encoded))


def _holds_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(_holds_nul(item) for item in value)
    return False
