"""A module outside the trusted prefixes the handler tests allow."""

from __future__ import annotations

from typing import Any


async def handler(payload: Any, metadata: Any) -> None:
    return None
