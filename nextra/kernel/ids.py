"""Identifiers: time-ordered, URL-safe and valid as NATS subject tokens."""

from __future__ import annotations

import os
import time

__all__ = ("is_token", "new_id")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case


def new_id() -> str:
    """A 26-character ULID in lower case: sortable by creation time, unique."""
    value = (time.time_ns() // 1_000_000) << 80 | int.from_bytes(os.urandom(10))
    chars = []
    for _ in range(26):
        value, index = divmod(value, 32)
        chars.append(_ALPHABET[index])
    return "".join(reversed(chars))


def is_token(value: str) -> bool:
    """Whether ``value`` can stand as one NATS subject token in Nextra's subjects."""
    return 0 < len(value) <= 64 and all(
        ch.isascii() and (ch.isalnum() or ch in "-_") for ch in value
    )
