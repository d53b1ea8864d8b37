"""The run aggregate's decisions: start, record a step, end, cancel, expire."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import msgspec

from nextra.domain.flows.model import Organism
from nextra.domain.runs.payloads import PayloadInvalid, payload_size, validate_payload
from nextra.domain.runs.routing import Reply, listeners_for, payload_type_of, route
from nextra.domain.runs.state import RunState
from nextra.domain.runs.threads import thread_id
from nextra.domain.tiers import TierLimits
from nextra.events.runs import (
    FailureReason,
    LogLine,
    Message,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunLimits,
    RunTriggered,
    StepCompleted,
    StepError,
    StepOutcome,
    StepRetried,
    Trigger,
)
from nextra.events.tenants import Tier
from nextra.kernel.errors import ConflictError, ValidationError
from nextra.kernel.text import json_has_nul

__all__ = (
    "PayloadTooLarge",
    "StepResult",
    "cancel",
    "complete_step",
    "entry_type",
    "expire",
    "limits_of",
    "retry",
    "same_trigger",
    "settle",
    "start",
)


MAX_EVENT_BYTES = 1_000_000
"""Most bytes of one run event: NX_RUNS takes messages of up to 1 MiB
(``streams/runs.toml``), and the store's headers need the rest."""
_LOGS_KEPT = 20
_ENCODER = msgspec.json.Encoder()


class PayloadTooLarge(ValidationError):
    """A trigger's payload is larger than the tier allows, or than one event holds."""

    code = "payload-too-large"


class StepResult(msgspec.Struct, frozen=True, kw_only=True):
    """What running one step produced, as the worker observed it.

    Attributes:
        limit: A limit the step itself crossed (``handler_timeout``, or
            ``poison`` for a message that kept failing its worker).
    """

    outcome: StepOutcome
    replies: tuple[Reply, ...] = ()
    error: StepError | None = None
    logs: tuple[LogLine, ...] = ()
    started_at: datetime
    duration_ms: float
    attempt: int = 1
    limit: FailureReason | None = None


def limits_of(tier: TierLimits) -> RunLimits:
    """A tier's run limits, as a run records them."""
    return RunLimits(
        max_hops=tier.max_hops_per_run,
        handler_timeout_seconds=tier.handler_timeout_seconds,
        deadline_seconds=tier.run_deadline_seconds,
        max_payload_bytes=tier.max_payload_bytes,
        max_fan_out=tier.max_fan_out,
        max_llm_tokens=tier.max_llm_tokens_per_run,
    )


def start(
    *,
    run_id: str,
    flow_id: str,
    revision: int,
    organism: Organism,
    tier: Tier,
    limits: RunLimits,
    trigger: Trigger,
    payload_type: str,
    payload: dict[str, Any],
    now: datetime,
) -> RunTriggered:
    """Begin a run with a message from the trigger to the flow's entry listener.

    Raises:
        ValidationError: The flow has no entry listener, or it does not take
            ``payload_type``, or the payload does not fit that type.
        PayloadTooLarge: The payload is over the tier's size limit.
    """
    entry = organism.entry
    if entry is None:
        message = f"flow {flow_id} has no listener to deliver a trigger to"
        raise ValidationError(message, expected="a listener", got="none")
    receivers = listeners_for(organism, entry, payload_type)
    if not receivers:
        takes = _entry_types(organism)
        message = (
            f"entry listener {entry} takes {' or '.join(takes)}, not {payload_type}"
        )
        raise ValidationError(
            message, expected=" | ".join(takes), got=payload_type, where="payload"
        )
    size = payload_size(payload)
    if size > limits.max_payload_bytes:
        message = (
            f"the payload is {size} bytes; the {tier} tier allows "
            f"{limits.max_payload_bytes}"
        )
        raise PayloadTooLarge(
            message,
            expected=f"<= {limits.max_payload_bytes}",
            got=size,
            where="payload",
        )
    expected = payload_type_of(organism, receivers[0])
    try:
        checked = validate_payload(payload, expected, organism)
    except PayloadInvalid as error:
        message = f"the payload does not fit {expected.name}: {error}"
        raise ValidationError(
            message,
            expected=error.expected,
            got=error.got,
            where=f"payload.{error.where}" if error.where else "payload",
        ) from error

    chain = (trigger.source, entry)
    first = Message(
        id="1",
        kind="trigger",
        sender=trigger.source,
        to=entry,
        payload_type=expected.name,
        payload=checked,
        chain=chain,
        thread_id=thread_id(run_id, chain),
        receivers=len(receivers),
    )
    started = RunTriggered(
        run_id=run_id,
        flow_id=flow_id,
        revision=revision,
        tier=tier,
        trigger=trigger,
        message=first,
        limits=limits,
        deadline=now + timedelta(seconds=limits.deadline_seconds),
    )
    size = len(_ENCODER.encode(started))
    if size > MAX_EVENT_BYTES:
        message = (
            f"with its run's details the trigger is {size} bytes; one run event "
            f"holds at most {MAX_EVENT_BYTES}"
        )
        raise PayloadTooLarge(
            message, expected=f"<= {MAX_EVENT_BYTES}", got=size, where="payload"
        )
    return started


def entry_type(organism: Organism, flow_id: str) -> str:
    """The payload type the flow's entry listener takes, when it takes one.

    Raises:
        ValidationError: The entry listener takes several types; the trigger
            must say which.
    """
    types = _entry_types(organism)
    if len(types) > 1:
        message = (
            f"entry listener {organism.entry} of flow {flow_id} takes "
            f"{', '.join(types)}; say which with payload_type"
        )
        raise ValidationError(
            message, expected=" | ".join(types), got=None, where="payload_type"
        )
    return types[0] if types else ""


def _entry_types(organism: Organism) -> list[str]:
    entry = (organism.entry or "").lower()
    return sorted(
        {
            listener.payload_type
            for listener in organism.listeners
            if listener.name.lower() == entry
        }
    )


def same_trigger(
    earlier: RunTriggered,
    organism: Organism,
    payload_type: str | None,
    payload: dict[str, Any] | str,
) -> bool:
    """Whether a trigger sent again asks for what ``earlier`` started.

    ``organism`` is the revision ``earlier`` was pinned to: the payload is read
    as that revision read it, so a retry still matches after the flow changed.
    Text is compared as text; who sends it again does not matter.
    """
    sent = earlier.message
    if isinstance(payload, str):
        return sent.payload_type == "TextInput" and sent.payload.get("text") == payload
    if payload_type is not None and payload_type.lower() != sent.payload_type.lower():
        return False
    receivers = listeners_for(organism, sent.to, sent.payload_type)
    if not receivers:
        return False
    try:
        checked = validate_payload(
            payload, payload_type_of(organism, receivers[0]), organism
        )
    except PayloadInvalid:
        return False
    return bool(checked == sent.payload)


def complete_step(
    state: RunState,
    organism: Organism,
    message: Message,
    entry: int,
    result: StepResult,
) -> StepCompleted | None:
    """Record the outcome of ``entry``'s step on ``message``.

    Returns ``None`` when there is nothing to record: the step's outcome is
    already committed (a duplicate delivery), or the run has ended or another
    step has decided how it ends (its output, or a limit); a step that was
    still running then has its outcome discarded, as under a cancel.
    """
    if state.decided() or (message.id, entry) in state.done:
        return None

    receivers = listeners_for(organism, message.to, message.payload_type)
    listener = receivers[entry]
    if result.limit is not None or result.outcome != "ok":
        return _bounded(
            StepCompleted(
                message_id=message.id,
                listener=listener.name,
                entry=entry,
                outcome=result.outcome,
                error=result.error,
                logs=result.logs,
                started_at=result.started_at,
                duration_ms=result.duration_ms,
                attempt=result.attempt,
                limit=result.limit,
            )
        )

    routed = route(organism, state, message, listener, result.replies)
    error = result.error
    if routed.limit is not None:
        error = StepError(code=routed.limit, message=routed.detail)
    return _bounded(
        StepCompleted(
            message_id=message.id,
            listener=listener.name,
            entry=entry,
            outcome=result.outcome,
            sent=routed.sent,
            dropped=routed.dropped,
            error=error,
            logs=result.logs,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            attempt=result.attempt,
            responded=routed.responded,
            limit=routed.limit,
        )
    )


def _bounded(step: StepCompleted) -> StepCompleted:
    """The step as recorded, or, if one event cannot hold it, a payload failure.

    Each payload is within the tier's limit, but a step also carries everything
    it sent on, what was dropped, and its logs: together they can be more than
    the stream takes in one message. The run then fails with ``payload_limit``
    rather than its commit failing until the step looks like poison.
    """
    step = _storable(step)
    size = len(_ENCODER.encode(step))
    if size <= MAX_EVENT_BYTES:
        return step
    detail = (
        f"the step's outcome is {size} bytes with what it sent on, dropped and "
        f"logged; one run event holds at most {MAX_EVENT_BYTES}"
    )
    logs = step.logs[:_LOGS_KEPT]
    while logs and len(_ENCODER.encode(logs)) > MAX_EVENT_BYTES // 2:
        logs = logs[: len(logs) // 2]
    return msgspec.structs.replace(
        step,
        outcome="refused",
        sent=(),
        dropped=(),
        responded=False,
        logs=logs,
        error=StepError(code="payload_limit", message=detail),
        limit="payload_limit",
    )


def _storable(step: StepCompleted) -> StepCompleted:
    """The step without NUL characters (U+0000), which the store refuses.

    Read models are PostgreSQL, whose text cannot hold them. In a log line or
    an error message a NUL becomes U+FFFD; in what the handler returned it makes
    the return invalid, so that its commit does not fail until it looks like
    poison.
    """
    if not _has_nul(step):
        return step
    logs = tuple(
        msgspec.structs.replace(line, message=_without_nul(line.message))
        for line in step.logs
    )
    error = step.error
    if error is not None:
        error = msgspec.structs.replace(error, message=_without_nul(error.message))
    step = msgspec.structs.replace(step, logs=logs, error=error)
    if not _has_nul(step):
        return step
    return msgspec.structs.replace(
        step,
        outcome="invalid_return",
        sent=(),
        dropped=(),
        responded=False,
        error=StepError(
            code="invalid-return",
            message=(
                f"listener {step.listener} returned text with a NUL character "
                "(U+0000), which Nextra does not store"
            ),
        ),
    )


def _has_nul(step: StepCompleted) -> bool:
    return json_has_nul(_ENCODER.encode(step))


def _without_nul(text: str) -> str:
    return text.replace("\x00", "\ufffd")


def retry(state: RunState, message: Message, entry: int, attempt: int) -> StepRetried:
    """Record that a step runs again, alone, after its delivery was lost."""
    return StepRetried(message_id=message.id, entry=entry, attempt=attempt)


def settle(state: RunState) -> RunCompleted | RunFailed | None:
    """The event that ends the run, once its steps have decided it.

    A run ends when a step produced its output or crossed a limit, or when no
    message is owed a step any more. A run that goes quiet after a step failed,
    without an output, has failed.
    """
    if state.finished or not state.exists:
        return None
    verdict = state.verdict
    if verdict is not None and verdict.output is not None:
        output = verdict.output
        return RunCompleted(
            output_type=output.payload_type, output=output.payload, steps=state.steps
        )
    if verdict is not None and verdict.reason is not None:
        return RunFailed(
            reason=verdict.reason,
            message=verdict.message,
            listener=verdict.listener,
            steps=state.steps,
        )
    if state.open:
        return None
    if state.first_error is not None:
        listener, error = state.first_error
        message = f"listener {listener} failed ({error.code}): {error.message}"
        return RunFailed(
            reason="handler_error",
            message=message,
            listener=listener,
            steps=state.steps,
        )
    return RunCompleted(steps=state.steps)


def cancel(state: RunState, reason: str) -> RunCancelled:
    """Stop the run: steps still owed are not run.

    Raises:
        ConflictError: The run has already ended.
    """
    if state.finished:
        message = f"run {state.run_id} has already ended ({state.status})"
        raise ConflictError(
            message, expected="running", got=state.status, where=state.run_id
        )
    return RunCancelled(reason=reason, steps=state.steps)


def expire(state: RunState, now: datetime) -> RunFailed | None:
    """Fail the run if it is still open past its deadline (the watchdog's rule)."""
    if state.finished or state.deadline is None or now < state.deadline:
        return None
    seconds = state.limits.deadline_seconds if state.limits else 0
    message = f"the run was still open after its deadline of {seconds:g}s"
    return RunFailed(reason="deadline", message=message, steps=state.steps)
