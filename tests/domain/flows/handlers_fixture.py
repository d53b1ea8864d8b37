"""A trusted module for the validator's self-hosted cases: handlers and payloads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Greeting:
    name: str


class NotADataclass:
    name: str = ""


async def greet(payload: Greeting, metadata: Any) -> None:
    return None


def greet_sync(payload: Greeting, metadata: Any) -> None:
    return None


class AsyncCallable:
    async def __call__(self, payload: Greeting, metadata: Any) -> None:
        return None


callable_handler = AsyncCallable()
