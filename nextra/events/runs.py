"""Events of the run aggregate: one execution of a flow, step by step.

A run's events live on ``nx.run.<tenant>.<flow>.<run>``. They are the run's whole
truth: the trigger and its limits, every step's outcome with the messages it sent
on, and how the run ended. Workers take their next steps from these events, the
runs projection is built from them, and replay reads them back.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, ClassVar, Literal

import msgspec

from nextra.events.base import Event
from nextra.events.tenants import Tier

__all__ = (
    "DropReason",
    "DroppedMessage",
    "FailureReason",
    "LogLine",
    "Message",
    "MessageKind",
    "RunCancelled",
    "RunCompleted",
    "RunFailed",
    "RunLimits",
    "RunTriggered",
    "StepCompleted",
    "StepError",
    "StepOutcome",
    "StepRetried",
    "Trigger",
)

MessageKind = Literal["trigger", "forward", "respond", "system"]
StepOutcome = Literal["ok", "error", "invalid_return", "timeout", "refused"]
FailureReason = Literal[
    "hop_limit",
    "handler_timeout",
    "deadline",
    "payload_limit",
    "fan_out_limit",
    "handler_error",
    "poison",
]
DropReason = Literal[
    "unroutable", "peer_violation", "invalid_payload", "late_reply", "no_caller"
]


class Message(msgspec.Struct, frozen=True, kw_only=True):
    """One message of a run: a payload on its way to a listener.

    Attributes:
        id: Unique within the run, given in the order messages were sent.
        kind: How it was sent: by the trigger, a forward, a respond, or by the
            runtime (a ``SystemError`` to an agent whose send was refused).
        sender: The listener that sent it, or the trigger's identity.
        to: The listener it is addressed to, as the sender wrote it.
        payload_type: The payload's type name.
        payload: The payload, as JSON-shaped data.
        chain: The call chain it travels on, as a list of names (never a dotted
            string), ending with the receiver.
        thread_id: The chain's thread id within the run.
        receivers: How many listener entries take it (duplicate names are
            delivered to each, in order); ``0`` for the run's output, a respond
            that reached the trigger.
    """

    id: str
    kind: MessageKind
    sender: str
    to: str
    payload_type: str
    payload: dict[str, Any]
    chain: tuple[str, ...]
    thread_id: str
    receivers: int = 1


class RunLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The bounds of one run, taken from the tenant's tier when it was triggered.

    Attributes:
        max_hops: Steps the run may take in all.
        handler_timeout_seconds: The longest a handler may run; a listener's
            ``timeout_seconds`` may only lower it.
        deadline_seconds: Wall-clock time from trigger to end.
        max_payload_bytes: The largest payload a message may carry, as JSON.
        max_fan_out: The most messages one handler call may send.
        max_llm_tokens: The run's LLM token budget.
    """

    max_hops: int
    handler_timeout_seconds: float
    deadline_seconds: float
    max_payload_bytes: int
    max_fan_out: int
    max_llm_tokens: int


class Trigger(msgspec.Struct, frozen=True, kw_only=True):
    """What started a run.

    Attributes:
        kind: ``manual`` (the API's run button or inject route), and later
            ``webhook``, ``schedule``, ``event``.
        source: The authenticated identity the first message comes from
            (``user:<id>``, ``api-key:<id>``), never taken from the request body.
    """

    kind: Literal["manual", "webhook", "schedule", "event"]
    source: str


class RunTriggered(Event, frozen=True, kw_only=True):
    """A trigger was stored: a run of the flow's pinned revision begins.

    ``message`` is the first message, to the flow's entry listener.
    """

    type_name: ClassVar[str] = "run.triggered"

    run_id: str
    flow_id: str
    revision: int
    tier: Tier
    trigger: Trigger
    message: Message
    limits: RunLimits
    deadline: datetime


class DroppedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message a step tried to send that was not delivered, and why.

    Attributes:
        reason: ``unroutable`` (no listener has that name and payload type),
            ``peer_violation`` (an agent sent outside its peers),
            ``invalid_payload`` (the payload does not fit the receiver's type),
            ``late_reply`` (the caller had already responded: an orphaned reply),
            ``no_caller`` (a respond with nobody left to answer).
        detail: The reason in words, naming the routing key or field.
    """

    reason: DropReason
    detail: str
    sender: str
    to: str
    payload_type: str
    payload: dict[str, Any] = {}


class StepError(msgspec.Struct, frozen=True, kw_only=True):
    """Why a step did not produce a normal outcome."""

    code: str
    message: str


class LogLine(msgspec.Struct, frozen=True, kw_only=True):
    """A line a handler logged while it ran."""

    at: datetime
    level: str
    message: str


class StepCompleted(Event, frozen=True, kw_only=True):
    """A listener handled a message; its outcome and what it sent are committed.

    A step is one message delivered to one listener. When a routing key names
    several listeners (duplicate names), each is its own step, numbered by
    ``entry`` in declaration order.

    Attributes:
        outcome: ``ok`` (it returned, possibly nothing), ``error`` (it raised),
            ``invalid_return``, ``timeout``, or ``refused`` (not run: the payload
            or the listener could not be used).
        sent: Messages delivered on, each a step for a later worker.
        dropped: Messages it tried to send that were not delivered.
        logs: What the handler logged, in order (capped).
        attempt: Which delivery of the message ran it (1 unless redelivered).
        responded: The listener answered its caller, which closes its place in
            the chain: replies that reach it later are dropped (D4).
        limit: A limit this step crossed; the run ends failed with it as reason.
    """

    type_name: ClassVar[str] = "run.step_completed"

    message_id: str
    listener: str
    entry: int = 0
    outcome: StepOutcome
    sent: tuple[Message, ...] = ()
    dropped: tuple[DroppedMessage, ...] = ()
    error: StepError | None = None
    logs: tuple[LogLine, ...] = ()
    started_at: datetime
    duration_ms: float
    attempt: int = 1
    responded: bool = False
    limit: FailureReason | None = None


class StepRetried(Event, frozen=True, kw_only=True):
    """A worker runs a step again, alone, after the delivery that had it was lost.

    A lost delivery means a worker died or stalled with the step in hand. The
    retry runs with nothing else beside it and is recorded first, so a step that
    keeps killing its workers is recognised by its own retries, not by the
    deliveries that other steps' crashes cost it.
    """

    type_name: ClassVar[str] = "run.step_retried"

    message_id: str
    entry: int = 0
    attempt: int


class RunCompleted(Event, frozen=True, kw_only=True):
    """The run ended well.

    ``output`` is the payload that a respond carried back to the trigger (D3);
    ``None`` when the run went quiet without answering (a handler returned
    ``None``).
    """

    type_name: ClassVar[str] = "run.completed"

    output_type: str | None = None
    output: dict[str, Any] | None = None
    steps: int


class RunFailed(Event, frozen=True, kw_only=True):
    """The run ended as failed: a limit was crossed or a step went wrong.

    Attributes:
        reason: A stable code (``hop_limit``, ``handler_timeout``, ``deadline``,
            ``payload_limit``, ``fan_out_limit``, ``handler_error``, ``poison``).
        message: The reason in words, naming the listener and the limit.
        listener: The listener involved, if one was.
    """

    type_name: ClassVar[str] = "run.failed"

    reason: FailureReason
    message: str
    listener: str | None = None
    steps: int


class RunCancelled(Event, frozen=True, kw_only=True):
    """Someone cancelled the run; no handler runs for it any more."""

    type_name: ClassVar[str] = "run.cancelled"

    reason: str = ""
    steps: int
