"""Identifiers: time-ordered, URL-safe and valid as NATS subject tokens."""

from __future__ import annotations

import os
import re
import time

__all__ = ("is_token", "new_id")

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"  # Crockford base32, lower case
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,64}")


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
    return _TOKEN.fullmatch(value) is not None
