"""What a Python handler is given and may return: Nextra's handler contract.

The shapes follow xml-pipeline 0.4.0 (``HandlerResponse``, ``HandlerMetadata``),
so an organism written for it runs unchanged; ``nextra.sdk`` re-exports them for
new code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ("HandlerMetadata", "HandlerResponse", "ThreadMessage")


@dataclass(frozen=True, slots=True)
class HandlerResponse:
    """A handler's answer: forward ``payload`` to ``to``, or respond to the caller.

    Build a forward with ``HandlerResponse(payload, to="name")`` and a respond
    with ``HandlerResponse.respond(payload)``. A handler may return one, a list
    of several (explicit fan-out), or ``None`` to stop.
    """

    payload: Any
    to: str | None = None
    is_response: bool = False

    @classmethod
    def respond(cls, payload: Any) -> HandlerResponse:
        """Send ``payload`` back to whoever called this listener."""
        return cls(payload=payload, to=None, is_response=True)


@dataclass(frozen=True, slots=True)
class ThreadMessage:
    """One message delivered on a thread, as thread memory shows it.

    Attributes:
        sender: Who sent it: a listener name, or the trigger's identity.
        to: The listener it was addressed to.
        payload_type: The payload's type name.
        payload: The payload as JSON-shaped data.
    """

    sender: str
    to: str
    payload_type: str
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class HandlerMetadata:
    """What the runtime tells a handler about the message it is handling.

    Attributes:
        thread_id: The opaque id of this call-chain position; the same chain in
            the same run always has the same id, other runs never share it.
        from_id: The previous hop: a listener name, or the trigger's identity
            (``user:<id>``, ``api-key:<id>``...) for the first message.
        own_name: The listener's name when it is an agent, else ``None``.
        is_self_call: The message came from this same listener (self-iteration,
            or a response unwinding into it).
        usage_instructions: Generated documentation of an agent's peers.
        todo_nudge: Accepted for compatibility; always empty for now.
        run_id: The run this step belongs to.
        step_id: The step's id, the same on every attempt of it and never on
            another step: the idempotency key for what the handler does outside
            Nextra, since a step whose worker died before its outcome was stored
            runs again.
        attempt: The delivery of the event that owed this step: 1 the first
            time, more when it came back (the step may or may not have run).
        history: Thread memory: the messages delivered on this thread so far in
            this run, oldest first, ending with the one being handled.
    """

    thread_id: str
    from_id: str
    own_name: str | None = None
    is_self_call: bool = False
    usage_instructions: str = ""
    todo_nudge: str = ""
    run_id: str = ""
    step_id: str = ""
    attempt: int = 1
    history: tuple[ThreadMessage, ...] = field(default=())
