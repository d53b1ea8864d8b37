"""What the API needs from the running platform, handed in by the composition root."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass

__all__ = ("ApiContext", "Readiness")

Readiness = Callable[[], Awaitable[dict[str, str | None]]]
"""Check name to ``None`` when it passes, or what is wrong."""


@dataclass(frozen=True, slots=True)
class ApiContext:
    readiness: Readiness
    refresh_metrics: Callable[[], Awaitable[None]]
