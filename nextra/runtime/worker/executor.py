"""Running one step: the listener's handler under its limits, with its logs kept."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Literal

import msgspec

from nextra.domain.flows.model import Listener, Organism
from nextra.domain.runs.contract import HandlerMetadata, ThreadMessage
from nextra.domain.runs.decider import StepResult
from nextra.domain.runs.routing import Reply
from nextra.domain.runs.state import RunState
from nextra.events.runs import LogLine, Message, StepError
from nextra.kernel.errors import NextraError
from nextra.kernel.logging import get_logger
from nextra.runtime.handlers import load_handler
from nextra.runtime.handlers.base import Handler

__all__ = ("StepRunner",)

log = get_logger(__name__)

MAX_LOG_LINES = 200
MAX_LOG_LINE = 2000

_step_logs: contextvars.ContextVar[list[LogLine] | None] = contextvars.ContextVar(
    "nextra_step_logs", default=None
)


class _StepLogHandler(logging.Handler):
    """Keeps what a handler logs with the step it logged in.

    The list lives in a context variable that each step's task sets, so
    concurrent steps never see each other's lines.
    """

    def emit(self, record: logging.LogRecord) -> None:
        lines = _step_logs.get()
        if lines is None or len(lines) >= MAX_LOG_LINES:
            return
        try:
            text = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string is the handler's
            text = str(record.msg)
        lines.append(
            LogLine(
                at=datetime.fromtimestamp(record.created, UTC),
                level=record.levelname.lower(),
                message=text[:MAX_LOG_LINE],
            )
        )


_CAPTURE = _StepLogHandler(level=logging.DEBUG)


def capture_handler_logs(prefixes: tuple[str, ...]) -> None:
    """Route log records of handler modules to their steps.

    Trusted handler modules log at INFO and above even when the process logs
    less: users read these lines in the run's timeline.
    """
    root = logging.getLogger()
    if _CAPTURE not in root.handlers:
        root.addHandler(_CAPTURE)
    for prefix in prefixes:
        logger = logging.getLogger(prefix.rstrip("."))
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.INFO)


class StepRunner:
    """Invokes handlers, keeping each loaded one for the revision it belongs to.

    Args:
        trusted_prefixes: Module prefixes whose Python handlers may be loaded.
        size: How many loaded handlers to keep; the least recently used go.
    """

    def __init__(self, trusted_prefixes: tuple[str, ...], *, size: int = 4096) -> None:
        self._trusted = trusted_prefixes
        self._size = size
        self._handlers: OrderedDict[tuple[str, int, int], Handler] = OrderedDict()

    async def run(
        self,
        organism: Organism,
        listener: Listener,
        message: Message,
        state: RunState,
        *,
        attempt: int,
    ) -> StepResult:
        """Run ``listener``'s handler on ``message`` and say what came of it.

        Never raises for what the handler does: an exception, a timeout or a
        bad return value is the step's outcome.
        """
        started_at = datetime.now(UTC)
        began = time.perf_counter()
        limits = state.limits
        assert limits is not None, "a triggered run has limits"
        assert state.deadline is not None, "a triggered run has a deadline"

        timeout = limits.handler_timeout_seconds
        if listener.timeout_seconds is not None:
            timeout = min(timeout, listener.timeout_seconds)
        remaining = (state.deadline - started_at).total_seconds()
        timeout = max(0.0, min(timeout, remaining))

        lines: list[LogLine] = []
        outcome: StepResult | None = None
        try:
            handler = self._handler(organism, listener, state)
            metadata = _metadata(organism, listener, message, state, attempt)
            task = asyncio.create_task(
                _invoke(handler, message, metadata, lines),
                name=f"step {state.run_id}/{message.id}",
            )
            replies = await asyncio.wait_for(task, timeout)
        except TimeoutError:
            reason: Literal["handler_timeout", "deadline"] = (
                "handler_timeout" if timeout < remaining else "deadline"
            )
            error = StepError(
                code=reason,
                message=f"listener {listener.name} ran longer than {timeout:g}s",
            )
            outcome = self._result("timeout", started_at, began, attempt, lines, error)
            return msgspec.structs.replace(outcome, limit=reason)
        except asyncio.CancelledError:
            current = asyncio.current_task()
            if current is not None and current.cancelling():
                raise  # this worker's own task is being cancelled
            # The handler cancelled itself: its failure, not the worker's.
            failure = StepError(
                code="handler_error",
                message="CancelledError: the handler was cancelled",
            )
            return self._result("error", started_at, began, attempt, lines, failure)
        except NextraError as error:
            failure = StepError(code=error.code, message=str(error))
            kind = "invalid_return" if error.code == "invalid-return" else "error"
            if error.code in ("handler-unavailable", "handler-load-failed"):
                kind = "refused"
            return self._result(kind, started_at, began, attempt, lines, failure)
        except Exception as error:  # noqa: BLE001 - the handler's failure, recorded
            failure = StepError(
                code="handler_error", message=f"{type(error).__name__}: {error}"
            )
            return self._result("error", started_at, began, attempt, lines, failure)
        return self._result(
            "ok", started_at, began, attempt, lines, None, replies=tuple(replies)
        )

    def _handler(
        self, organism: Organism, listener: Listener, state: RunState
    ) -> Handler:
        # Revisions never change, so a loaded handler serves all their runs.
        key = (state.flow_id, state.revision, organism.listeners.index(listener))
        handler = self._handlers.get(key)
        if handler is not None:
            self._handlers.move_to_end(key)
            return handler

        handler = load_handler(listener, organism, trusted_prefixes=self._trusted)
        self._handlers[key] = handler
        if len(self._handlers) > self._size:
            self._handlers.popitem(last=False)
        return handler

    @staticmethod
    def _result(
        outcome: str,
        started_at: datetime,
        began: float,
        attempt: int,
        lines: list[LogLine],
        error: StepError | None,
        *,
        replies: tuple[Reply, ...] = (),
    ) -> StepResult:
        return StepResult(
            outcome=outcome,  # type: ignore[arg-type]
            replies=replies,
            error=error,
            logs=tuple(lines),
            started_at=started_at,
            duration_ms=round((time.perf_counter() - began) * 1000, 3),
            attempt=attempt,
        )


async def _invoke(
    handler: Handler,
    message: Message,
    metadata: HandlerMetadata,
    lines: list[LogLine],
) -> list[Reply]:
    _step_logs.set(lines)
    replies = await handler.invoke(message.payload, metadata)
    return [
        Reply(kind=r.kind, to=r.to, payload_type=r.payload_type, payload=r.payload)
        for r in replies
    ]


def _metadata(
    organism: Organism,
    listener: Listener,
    message: Message,
    state: RunState,
    attempt: int,
) -> HandlerMetadata:
    thread = state.threads.get(message.thread_id, [])
    number = int(message.id)
    history = tuple(
        ThreadMessage(
            sender=seen.sender,
            to=seen.to,
            payload_type=seen.payload_type,
            payload=seen.payload,
        )
        for seen in thread
        if int(seen.id) <= number
    )
    return HandlerMetadata(
        thread_id=message.thread_id,
        from_id=message.sender,
        own_name=listener.name if listener.agent else None,
        is_self_call=message.sender.lower() == listener.name.lower(),
        run_id=state.run_id,
        # Listeners sharing a name each take the message: the listener's place
        # in the pinned revision tells their steps apart.
        step_id=f"{state.run_id}:{message.id}:{organism.listeners.index(listener)}",
        attempt=attempt,
        history=history,
    )
