"""Run history: a flow's runs, and one run with its step timeline."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
from litestar import get
from litestar.di import NamedDependency
from litestar.params import FromQuery, QueryParameter

from nextra.api.consistency import projected_to
from nextra.api.context import ApiContext
from nextra.api.flows import Identifier
from nextra.api.identity import Principal
from nextra.eventstore.subjects import flow_runs_filter, runs_subject
from nextra.kernel.errors import NotFoundError, ValidationError
from nextra.readmodels.flows import read_flow
from nextra.readmodels.runs import (
    RunDetail,
    RunMessage,
    RunStatus,
    RunStep,
    RunSummary,
    read_run,
    read_runs,
)

__all__ = ("list_runs", "show_run")

CURSOR_PATTERN = r"^[A-Za-z0-9_-]{1,200}$"
# A read waits less than a write: when the projector is behind, it answers with
# what the history has rather than hold the caller.
_READ_WAIT = 1.0


async def _runs_projected(context: ApiContext, subject: str) -> None:
    """Wait, briefly, until run history holds every event on ``subject``."""
    if context.runs_store is None:
        return
    last = await context.runs_store.last_sequence(subject)
    timeout = min(_READ_WAIT, context.read_your_writes_timeout)
    await projected_to(context, "runs", last, timeout=timeout)


class TriggerOut(msgspec.Struct, kw_only=True):
    kind: str
    source: str
    """Who the first message came from: ``user:<id>`` or ``api-key:<id>``."""


class RunErrorOut(msgspec.Struct, kw_only=True):
    """Why a run failed or was cancelled."""

    reason: str
    message: str | None
    listener: str | None


class RunOut(msgspec.Struct, kw_only=True):
    """A run as a flow's history lists it."""

    id: str
    flow_id: str
    revision: int
    status: RunStatus
    trigger: TriggerOut
    triggered_at: datetime
    deadline: datetime
    finished_at: datetime | None
    duration_ms: int | None
    steps: int
    """Steps taken: the run's hop count."""
    error: RunErrorOut | None
    output_type: str | None


class RunPage(msgspec.Struct, kw_only=True):
    items: list[RunOut]
    next_cursor: str | None


class MessageOut(msgspec.Struct, kw_only=True):
    id: str
    kind: str
    sender: str = msgspec.field(name="from")
    to: str
    payload_type: str
    payload: dict[str, Any]
    chain: list[str]
    thread_id: str


class StepErrorOut(msgspec.Struct, kw_only=True):
    code: str
    message: str


class DroppedOut(msgspec.Struct, kw_only=True):
    """A message the step tried to send that was not delivered."""

    reason: str
    detail: str
    to: str
    payload_type: str
    payload: dict[str, Any]


class LogLineOut(msgspec.Struct, kw_only=True):
    at: datetime
    level: str
    message: str


class StepOut(msgspec.Struct, kw_only=True):
    """One listener handling one message.

    ``from``, ``payload_type``, ``payload``, ``chain`` and ``thread_id`` are the
    incoming message's; ``sent`` lists the ids of the messages sent on.
    """

    message_id: str
    entry: int
    listener: str
    sender: str | None = msgspec.field(name="from")
    payload_type: str | None
    payload: dict[str, Any] | None
    chain: list[str] | None
    thread_id: str | None
    outcome: str
    error: StepErrorOut | None
    limit: str | None
    dropped: list[DroppedOut]
    sent: list[str]
    started_at: datetime
    duration_ms: float
    attempt: int
    logs: list[LogLineOut]


class RunDetailOut(RunOut, kw_only=True):
    """A run with its input, its output and every step in order."""

    input: MessageOut | None
    output: dict[str, Any] | None
    timeline: list[StepOut]


def _run_fields(run: RunSummary) -> dict[str, Any]:
    error = None
    if run.error_reason is not None:
        error = RunErrorOut(
            reason=run.error_reason,
            message=run.error_message,
            listener=run.error_listener,
        )
    return {
        "id": run.run_id,
        "flow_id": run.flow_id,
        "revision": run.revision,
        "status": run.status,
        "trigger": TriggerOut(kind=run.trigger_kind, source=run.trigger_source),
        "triggered_at": run.triggered_at,
        "deadline": run.deadline,
        "finished_at": run.finished_at,
        "duration_ms": run.duration_ms,
        "steps": run.steps,
        "error": error,
        "output_type": run.output_type,
    }


def _message(message: RunMessage) -> MessageOut:
    return MessageOut(
        id=message.message_id,
        kind=message.kind,
        sender=message.sender,
        to=message.to,
        payload_type=message.payload_type,
        payload=message.payload,
        chain=message.chain,
        thread_id=message.thread_id,
    )


def _step(step: RunStep) -> StepOut:
    error = None
    if step.error_code is not None:
        error = StepErrorOut(code=step.error_code, message=step.error_message or "")
    return StepOut(
        message_id=step.message_id,
        entry=step.entry,
        listener=step.listener,
        sender=step.sender,
        payload_type=step.payload_type,
        payload=step.payload,
        chain=step.chain,
        thread_id=step.thread_id,
        outcome=step.outcome,
        error=error,
        limit=step.limit_reason,
        dropped=[
            DroppedOut(
                reason=d.reason,
                detail=d.detail,
                to=d.to,
                payload_type=d.payload_type,
                payload=d.payload,
            )
            for d in step.dropped
        ],
        sent=step.sent,
        started_at=step.started_at,
        duration_ms=step.duration_ms,
        attempt=step.attempt,
        logs=[
            LogLineOut(at=line.at, level=line.level, message=line.message)
            for line in step.logs
        ],
    )


def _detail(detail: RunDetail) -> RunDetailOut:
    return RunDetailOut(
        **_run_fields(detail.run),
        input=_message(detail.input) if detail.input else None,
        output=detail.output,
        timeline=[_step(step) for step in detail.steps],
    )


# ISO 8601 only: Litestar would also take a bare number as a Unix time, which
# the schema does not promise.
# An offset only after a time: Python reads "2024-01-01+05" as 05:00 with no
# offset, which would filter from the wrong moment.
ISO_TIME = (
    r"^\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}(:?\d{2})?)?)?$"
)
IsoTime = Annotated[str | None, QueryParameter(pattern=ISO_TIME, max_length=40)]


def _utc(text: str | None, where: str) -> datetime | None:
    """``text`` as a time in UTC; a time without an offset is taken as UTC."""
    if text is None:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        message = f"{where} is not a valid ISO 8601 time"
        raise ValidationError(
            message, expected="ISO 8601", got=text, where=where
        ) from None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:
        message = f"{where} is outside the range of times Nextra can compare"
        raise ValidationError(message, got=value.isoformat(), where=where) from None


# Plain handlers, not a Controller: Litestar refuses two Controllers on one path
# (each brings its own OPTIONS handler), and POST /api/flows/{flow_id}/runs
# belongs to the triggers controller. Register these after it.


@get("/api/flows/{flow_id:str}/runs", tags=["runs"], security=[{"bearer": []}])
async def list_runs(
    context: NamedDependency[ApiContext],
    principal: NamedDependency[Principal],
    flow_id: Identifier,
    status: FromQuery[RunStatus | None] = None,
    since: IsoTime = None,
    until: IsoTime = None,
    cursor: Annotated[str | None, QueryParameter(pattern=CURSOR_PATTERN)] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
) -> RunPage:
    """The flow's runs, newest first, ``limit`` at a time.

    ``since`` (inclusive) and ``until`` (exclusive) bound when runs were
    triggered; a time without an offset is UTC. Pass ``next_cursor`` back as
    ``cursor`` for the next page.
    """
    await _runs_projected(context, flow_runs_filter(principal.tenant_id, flow_id))
    async with context.engine.connect() as connection:
        # The flow first: another tenant's flow is not found, whatever the
        # filters say.
        if await read_flow(connection, principal.tenant_id, flow_id) is None:
            message = f"flow {flow_id} does not exist"
            raise NotFoundError(message, where=f"flow/{flow_id}")
        page = await read_runs(
            connection,
            principal.tenant_id,
            flow_id,
            status=status,
            since=_utc(since, "since"),
            until=_utc(until, "until"),
            cursor=cursor,
            limit=limit,
        )
    return RunPage(
        items=[RunOut(**_run_fields(run)) for run in page.items],
        next_cursor=page.next_cursor,
    )


@get("/api/runs/{run_id:str}", tags=["runs"], security=[{"bearer": []}])
async def show_run(
    context: NamedDependency[ApiContext],
    principal: NamedDependency[Principal],
    run_id: Identifier,
) -> RunDetailOut:
    """One run: its trigger, input, outcome and the timeline of its steps."""
    async with context.engine.connect() as connection:
        detail = await read_run(connection, principal.tenant_id, run_id)
    if detail is None or detail.run.status == "running":
        # A run just triggered, or one that has just ended, may not be in the
        # history yet: wait briefly for what its events already say.
        await _runs_projected(context, runs_subject(principal.tenant_id, "*", run_id))
        async with context.engine.connect() as connection:
            detail = await read_run(connection, principal.tenant_id, run_id)
    if detail is None:
        message = f"run {run_id} does not exist"
        raise NotFoundError(message, where=f"run/{run_id}")
    return _detail(detail)
