"""Nextra's built-in handlers that run in this version: ``echo`` and ``output``."""

from __future__ import annotations

from typing import Any

from nextra.domain.flows.catalogue import BUILTIN_HANDLERS
from nextra.domain.flows.model import Listener
from nextra.domain.runs.contract import HandlerMetadata
from nextra.runtime.handlers.base import (
    Handler,
    HandlerLoadFailed,
    HandlerUnavailable,
    Reply,
)

__all__ = ("RespondUnchanged", "load_builtin_handler")

_PREFIX = "builtin:"


class RespondUnchanged:
    """Responds to the caller with the payload it was given.

    ``builtin:echo`` is for trying flows out; ``builtin:output`` marks where a
    flow's result leaves it. Both behave the same: when the respond reaches the
    trigger it is the run's output.

    Args:
        kind: The built-in's name (``echo`` or ``output``).
        payload_type: The listener's payload type, which the reply keeps.
    """

    def __init__(self, kind: str, payload_type: str) -> None:
        self.kind = kind
        self.payload_type = payload_type

    def __repr__(self) -> str:
        return f"RespondUnchanged({self.kind!r}, {self.payload_type!r})"

    async def invoke(
        self, payload: dict[str, Any], metadata: HandlerMetadata
    ) -> list[Reply]:
        # A copy, so that later changes to the caller's dict cannot alter the
        # reply once it has been recorded.
        reply = Reply(
            kind="respond",
            to=None,
            payload_type=self.payload_type,
            payload=dict(payload),
        )
        return [reply]


_RUNNABLE = frozenset({"echo", "output"})


def load_builtin_handler(listener: Listener) -> Handler:
    """The handler for a ``builtin:<kind>`` listener.

    Raises:
        HandlerUnavailable: The built-in is in the catalogue but not runnable yet.
        HandlerLoadFailed: ``listener.handler`` names no built-in at all (the
            validator refuses such flows, so this means the flow was not
            validated).
    """
    # The validator recognises built-ins by this prefix and keeps the reference
    # as written, so removing it gives the catalogue's key.
    reference = listener.handler
    kind = reference.removeprefix(_PREFIX)
    if not reference.startswith(_PREFIX) or kind not in BUILTIN_HANDLERS:
        known = ", ".join(f"{_PREFIX}{name}" for name in BUILTIN_HANDLERS)
        msg = f"listener {listener.name}: {reference!r} is not a built-in handler"
        raise HandlerLoadFailed(msg, expected=known, got=reference, where=listener.name)
    if kind not in _RUNNABLE:
        runnable = ", ".join(f"{_PREFIX}{name}" for name in sorted(_RUNNABLE))
        msg = (
            f"listener {listener.name}: the built-in handler {reference!r} arrives "
            f"in a later version of Nextra; this version runs {runnable}"
        )
        raise HandlerUnavailable(
            msg, expected=runnable, got=reference, where=listener.name
        )
    return RespondUnchanged(kind, listener.payload_type)
