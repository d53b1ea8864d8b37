"""A run's state, folded from its events: what is open, done, closed and owed."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

from nextra.events.base import Event
from nextra.events.runs import (
    FailureReason,
    Message,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunLimits,
    RunTriggered,
    StepCompleted,
    StepError,
    StepRetried,
)
from nextra.events.tenants import Tier

__all__ = ("RunState", "RunStatus", "Verdict", "fold")

RunStatus = Literal["running", "completed", "failed", "cancelled"]


class Verdict:
    """How a run must end, once a step decided it; the end event follows."""

    __slots__ = ("listener", "message", "output", "reason")

    def __init__(
        self,
        *,
        reason: FailureReason | None = None,
        message: str = "",
        listener: str | None = None,
        output: Message | None = None,
    ) -> None:
        self.reason = reason
        self.message = message
        self.listener = listener
        self.output = output


class RunState:
    """Everything the runtime needs to decide a run's next event.

    Mutable on purpose: a worker keeps one per run it is working on and applies
    each new event to it, instead of folding the whole history per step.

    Attributes:
        version: Stream sequence of the last event applied; ``0`` when none.
        open: Messages still owed a step, with how many listener entries are
            still to handle them.
        done: Steps whose outcome is committed, as ``(message id, entry)``.
        closed: Threads whose listener has responded; a respond aimed at one of
            them is a late reply.
        threads: The messages sent on each thread, in order: thread memory.
        retries: Steps run again alone after a lost delivery, and how often.
        first_error: The first step that went wrong, for a run that goes quiet
            without an output.
        verdict: Set when a step has decided how the run ends.
    """

    def __init__(self) -> None:
        self.version = 0
        self.exists = False
        self.run_id = ""
        self.flow_id = ""
        self.revision = 0
        self.tier: Tier = "free"
        self.source = ""
        self.limits: RunLimits | None = None
        self.deadline: datetime | None = None
        self.triggered_at: datetime | None = None
        self.status: RunStatus = "running"
        self.messages: dict[str, Message] = {}
        self.open: dict[str, int] = {}
        self.done: set[tuple[str, int]] = set()
        self.closed: set[str] = set()
        self.threads: dict[str, list[Message]] = {}
        self.retries: dict[tuple[str, int], int] = {}
        self.steps = 0
        self.first_error: tuple[str, StepError] | None = None
        self.verdict: Verdict | None = None

    @property
    def finished(self) -> bool:
        return self.status != "running"

    def decided(self) -> bool:
        """Ended, or a step has decided how it ends: no handler runs for it.

        A method, not a property: other tasks change the state while a step
        waits, so it is asked again rather than remembered.
        """
        return self.finished or self.verdict is not None

    @property
    def message_count(self) -> int:
        return len(self.messages)

    def apply(self, event: Event, sequence: int) -> None:
        """Fold one event at its stream sequence into the state.

        Events at or below the state's version are already in it and are
        skipped, so two readers catching up the same state cannot count twice.
        """
        if sequence <= self.version:
            return
        if isinstance(event, RunTriggered):
            self._triggered(event)
        elif isinstance(event, StepCompleted):
            self._stepped(event)
        elif isinstance(event, StepRetried):
            key = (event.message_id, event.entry)
            self.retries[key] = self.retries.get(key, 0) + 1
        elif isinstance(event, RunCompleted):
            self.status = "completed"
        elif isinstance(event, RunFailed):
            self.status = "failed"
        elif isinstance(event, RunCancelled):
            self.status = "cancelled"
        self.version = sequence

    def _triggered(self, event: RunTriggered) -> None:
        self.exists = True
        self.run_id = event.run_id
        self.flow_id = event.flow_id
        self.revision = event.revision
        self.tier = event.tier
        self.source = event.trigger.source
        self.limits = event.limits
        self.deadline = event.deadline
        self._sent(event.message)

    def _stepped(self, event: StepCompleted) -> None:
        self.steps += 1
        self.done.add((event.message_id, event.entry))
        remaining = self.open.get(event.message_id, 0) - 1
        if remaining > 0:
            self.open[event.message_id] = remaining
        else:
            self.open.pop(event.message_id, None)

        handled = self.messages.get(event.message_id)
        if event.responded and handled is not None:
            self.closed.add(handled.thread_id)
        if event.error is not None and self.first_error is None:
            self.first_error = (event.listener, event.error)
        for message in event.sent:
            if message.receivers == 0 and self.verdict is None:
                self.verdict = Verdict(output=message)
            self._sent(message)
        if event.limit is not None and self.verdict is None:
            detail = event.error.message if event.error else event.limit
            self.verdict = Verdict(
                reason=event.limit, message=detail, listener=event.listener
            )

    def _sent(self, message: Message) -> None:
        self.messages[message.id] = message
        self.threads.setdefault(message.thread_id, []).append(message)
        if message.kind == "forward" or message.kind == "trigger":
            # A new call onto a chain reopens it: chains are content-addressed,
            # so a caller that calls the same listener again reuses its thread.
            self.closed.discard(message.thread_id)
        if message.receivers > 0:
            self.open[message.id] = message.receivers


def fold(events: Iterable[tuple[Event, int]]) -> RunState:
    """The state after ``events``, each given with its stream sequence."""
    state = RunState()
    for event, sequence in events:
        state.apply(event, sequence)
    return state
