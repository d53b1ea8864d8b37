"""Run history: each run of a flow, the messages it carried, and its step timeline.

Built from ``NX_RUNS`` alone. A step's incoming message is either the trigger's
or one an earlier step sent on, so every message is kept in ``run_messages`` and
copied into the step's row when the step is applied.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import msgspec
from sqlalchemy import (
    BigInteger,
    Row,
    Update,
    bindparam,
    cast,
    func,
    literal,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from nextra.events.envelope import RecordedEvent
from nextra.events.runs import (
    DroppedMessage,
    LogLine,
    Message,
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunTriggered,
    StepCompleted,
)
from nextra.kernel.errors import ValidationError
from nextra.readmodels.projection import Projection
from nextra.readmodels.tables import run_messages, run_steps, runs

__all__ = (
    "RunDetail",
    "RunMessage",
    "RunStatus",
    "RunStep",
    "RunSummary",
    "RunsPage",
    "RunsProjection",
    "overdue_runs",
    "read_run",
    "read_run_flow",
    "read_runs",
)

RunStatus = Literal["running", "completed", "failed", "cancelled"]
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MessageKey = tuple[str, str, str]
_ENDING_COLUMNS = (
    "finished_at",
    "steps",
    "version",
    "status",
    "output_type",
    "output",
    "error_reason",
    "error_message",
    "error_listener",
)


class RunSummary(msgspec.Struct, frozen=True, kw_only=True):
    """A run as a list shows it: everything but its output."""

    tenant_id: str
    run_id: str
    flow_id: str
    revision: int
    status: RunStatus
    trigger_kind: str
    trigger_source: str
    triggered_at: datetime
    deadline: datetime
    finished_at: datetime | None
    duration_ms: int | None
    steps: int
    error_reason: str | None
    error_message: str | None
    error_listener: str | None
    output_type: str | None
    version: int


class RunMessage(msgspec.Struct, frozen=True, kw_only=True):
    message_id: str
    kind: str
    sender: str
    to: str
    payload_type: str
    payload: dict[str, Any]
    chain: list[str]
    thread_id: str


class RunStep(msgspec.Struct, frozen=True, kw_only=True):
    """One step of the timeline: a listener handling one message.

    ``sender``, ``payload_type``, ``payload``, ``chain`` and ``thread_id``
    describe the incoming message; they are ``None`` if it is unknown.
    """

    message_id: str
    entry: int
    listener: str
    sender: str | None
    payload_type: str | None
    payload: dict[str, Any] | None
    chain: list[str] | None
    thread_id: str | None
    outcome: str
    error_code: str | None
    error_message: str | None
    limit_reason: str | None
    dropped: list[DroppedMessage]
    sent: list[str]
    """Ids of the messages the step sent on, in order."""
    started_at: datetime
    duration_ms: float
    attempt: int
    logs: list[LogLine]
    sequence: int


class RunDetail(msgspec.Struct, frozen=True, kw_only=True):
    """A run with its output, the trigger's message and every step in order."""

    run: RunSummary
    output: dict[str, Any] | None
    input: RunMessage | None
    steps: list[RunStep]


class RunsPage(msgspec.Struct, frozen=True, kw_only=True):
    items: list[RunSummary]
    next_cursor: str | None
    """Pass back as ``cursor`` for the next page; ``None`` on the last one."""


class RunsProjection(Projection):
    tables = (runs, run_messages, run_steps)

    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        # Sort the batch into rows first, then write each table in a few
        # statements: new runs, messages, steps, then the runs' changes.
        started: list[dict[str, Any]] = []
        messages: dict[_MessageKey, dict[str, Any]] = {}
        steps: list[dict[str, Any]] = []
        stepped: dict[tuple[str, str], int] = {}
        endings: list[tuple[tuple[str, str], dict[str, Any]]] = []
        for recorded in events:
            tenant_id = recorded.aggregate.tenant_id
            run_id = recorded.aggregate.aggregate_id
            event = recorded.event
            if isinstance(event, RunTriggered):
                started.append(_started(tenant_id, recorded, event))
                _keep(messages, tenant_id, run_id, event.message, recorded.sequence)
            elif isinstance(event, StepCompleted):
                for message in event.sent:
                    _keep(messages, tenant_id, run_id, message, recorded.sequence)
                steps.append(_step(tenant_id, run_id, event, recorded.sequence))
                stepped[tenant_id, run_id] = recorded.sequence
            elif isinstance(event, RunCompleted | RunFailed | RunCancelled):
                endings.append(((tenant_id, run_id), _ending(recorded, event)))

        # ON CONFLICT DO NOTHING everywhere: applying a batch twice adds nothing.
        if started:
            await connection.execute(insert(runs).on_conflict_do_nothing(), started)
        if messages:
            await connection.execute(
                insert(run_messages).on_conflict_do_nothing(), list(messages.values())
            )
        if steps:
            await _fill_incoming(connection, steps, messages)
            await connection.execute(insert(run_steps).on_conflict_do_nothing(), steps)
        # Endings, then hop counts, each guarded by the row's version: an event
        # already applied, or older than the row, changes nothing. A step
        # before its run's end in this batch is counted by the end itself.
        if endings:
            await connection.execute(
                _END,
                [
                    {
                        "key_tenant": tenant_id,
                        "key_run": run_id,
                        **{f"end_{name}": value for name, value in ending.items()},
                    }
                    for (tenant_id, run_id), ending in endings
                ],
            )
        if stepped:
            await connection.execute(
                _RECOUNT,
                [
                    {"key_tenant": tenant_id, "key_run": run_id, "at_sequence": seq}
                    for (tenant_id, run_id), seq in stepped.items()
                ],
            )


def _run_row_before(version: str) -> Update:
    """An update of one run's row, guarded to rows older than the event applied."""
    return update(runs).where(
        runs.c.tenant_id == bindparam("key_tenant"),
        runs.c.run_id == bindparam("key_run"),
        runs.c.version < bindparam(version),
    )


# A run's end, as one statement for every ending of a batch.
_FINISHED_AT = bindparam("end_finished_at", type_=runs.c.finished_at.type)
_END = _run_row_before("end_version").values(
    {
        **{
            name: bindparam(f"end_{name}", type_=runs.c[name].type)
            for name in _ENDING_COLUMNS
        },
        "duration_ms": cast(
            func.round(
                func.extract("epoch", _FINISHED_AT - runs.c.triggered_at) * 1000
            ),
            BigInteger,
        ),
    }
)

# A run's hop count, recounted from its steps: right however often it is run.
_RECOUNT = _run_row_before("at_sequence").values(
    steps=select(func.count())
    .where(
        run_steps.c.tenant_id == runs.c.tenant_id,
        run_steps.c.run_id == runs.c.run_id,
    )
    .scalar_subquery(),
    version=bindparam("at_sequence"),
)


def _started(
    tenant_id: str, recorded: RecordedEvent, event: RunTriggered
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "run_id": recorded.aggregate.aggregate_id,
        "flow_id": event.flow_id,
        "revision": event.revision,
        "status": "running",
        "trigger_kind": event.trigger.kind,
        "trigger_source": event.trigger.source,
        "triggered_at": recorded.recorded_at,
        "deadline": event.deadline,
        "finished_at": None,
        "duration_ms": None,
        "steps": 0,
        "error_reason": None,
        "error_message": None,
        "error_listener": None,
        "output_type": None,
        "output": None,
        "version": recorded.sequence,
    }


def _keep(
    messages: dict[_MessageKey, dict[str, Any]],
    tenant_id: str,
    run_id: str,
    message: Message,
    sequence: int,
) -> None:
    messages.setdefault(
        (tenant_id, run_id, message.id),
        {
            "tenant_id": tenant_id,
            "run_id": run_id,
            "message_id": message.id,
            "kind": message.kind,
            "sender": message.sender,
            "to": message.to,
            "payload_type": message.payload_type,
            "payload": message.payload,
            "chain": list(message.chain),
            "thread_id": message.thread_id,
            "receivers": message.receivers,
            "sequence": sequence,
        },
    )


def _step(
    tenant_id: str, run_id: str, event: StepCompleted, sequence: int
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "run_id": run_id,
        "message_id": event.message_id,
        "entry": event.entry,
        "listener": event.listener,
        "outcome": event.outcome,
        "error_code": event.error.code if event.error else None,
        "error_message": event.error.message if event.error else None,
        "limit_reason": event.limit,
        "dropped": msgspec.to_builtins(event.dropped),
        "sent": [message.id for message in event.sent],
        "sent_count": len(event.sent),
        "started_at": event.started_at,
        "duration_ms": event.duration_ms,
        "attempt": event.attempt,
        "logs": msgspec.to_builtins(event.logs),
        "sequence": sequence,
    }


_INCOMING = ("sender", "payload_type", "payload", "chain", "thread_id")


async def _fill_incoming(
    connection: AsyncConnection,
    steps: list[dict[str, Any]],
    batch: dict[_MessageKey, dict[str, Any]],
) -> None:
    """Copy each step's incoming message into its row, from the batch or the table."""
    keys = {(s["tenant_id"], s["run_id"], s["message_id"]) for s in steps}
    missing = [key for key in keys if key not in batch]
    known = {key: batch[key] for key in keys if key in batch}
    if missing:
        rows = await connection.execute(
            select(run_messages).where(
                tuple_(
                    run_messages.c.tenant_id,
                    run_messages.c.run_id,
                    run_messages.c.message_id,
                ).in_(missing)
            )
        )
        for row in rows:
            known[row.tenant_id, row.run_id, row.message_id] = row._asdict()
    for step in steps:
        message = known.get((step["tenant_id"], step["run_id"], step["message_id"]))
        for field in _INCOMING:
            step[field] = message[field] if message is not None else None


def _ending(
    recorded: RecordedEvent, event: RunCompleted | RunFailed | RunCancelled
) -> dict[str, Any]:
    """The columns a run's end changes: every one of them, as ``_END`` binds all."""
    ending: dict[str, Any] = dict.fromkeys(_ENDING_COLUMNS)
    ending.update(
        finished_at=recorded.recorded_at, steps=event.steps, version=recorded.sequence
    )
    if isinstance(event, RunCompleted):
        ending.update(
            status="completed", output_type=event.output_type, output=event.output
        )
    elif isinstance(event, RunFailed):
        ending.update(
            status="failed",
            error_reason=event.reason,
            error_message=event.message,
            error_listener=event.listener,
        )
    else:
        ending.update(
            status="cancelled", error_reason="cancelled", error_message=event.reason
        )
    return ending


_SUMMARY = [column for column in runs.c if column.name != "output"]


def _summary(row: Row[Any]) -> RunSummary:
    return RunSummary(**row._mapping)


def _cursor_after(run: RunSummary) -> str:
    micros = (run.triggered_at - _EPOCH) // timedelta(microseconds=1)
    raw = f"{micros}.{run.run_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _position(cursor: str) -> tuple[datetime, str]:
    """The position a cursor names: the triggered time and id of a run."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        micros, _, run_id = raw.partition(".")
        return _EPOCH + timedelta(microseconds=int(micros)), run_id
    except (binascii.Error, UnicodeDecodeError, ValueError, OverflowError):
        message = "cursor is not one this API gave out; pass next_cursor back as is"
        raise ValidationError(message, got=cursor, where="cursor") from None


async def read_runs(
    connection: AsyncConnection,
    tenant_id: str,
    flow_id: str,
    *,
    status: RunStatus | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    cursor: str | None = None,
    limit: int = 50,
) -> RunsPage:
    """A flow's runs, newest first, ``limit`` at a time.

    Args:
        since: Only runs triggered at or after this time.
        until: Only runs triggered before this time.
        cursor: ``next_cursor`` of the previous page.

    Raises:
        ValidationError: ``cursor`` was not made by this function.
    """
    query = (
        select(*_SUMMARY)
        .where(runs.c.tenant_id == tenant_id, runs.c.flow_id == flow_id)
        .order_by(runs.c.triggered_at.desc(), runs.c.run_id.desc())
        .limit(limit + 1)
    )
    if status is not None:
        query = query.where(runs.c.status == status)
    if since is not None:
        query = query.where(runs.c.triggered_at >= since)
    if until is not None:
        query = query.where(runs.c.triggered_at < until)
    if cursor is not None:
        at, run_id = _position(cursor)
        query = query.where(
            tuple_(runs.c.triggered_at, runs.c.run_id)
            < tuple_(
                literal(at, runs.c.triggered_at.type),
                literal(run_id, runs.c.run_id.type),
            )
        )
    rows = [_summary(row) for row in await connection.execute(query)]
    page = rows[:limit]
    more = len(rows) > limit and bool(page)
    return RunsPage(items=page, next_cursor=_cursor_after(page[-1]) if more else None)


async def read_run(
    connection: AsyncConnection, tenant_id: str, run_id: str
) -> RunDetail | None:
    """One run of one tenant with its steps in order; ``None`` if there is none."""
    row = (
        await connection.execute(
            select(*_SUMMARY, runs.c.output).where(
                runs.c.tenant_id == tenant_id, runs.c.run_id == run_id
            )
        )
    ).first()
    if row is None:
        return None
    fields = row._asdict()
    output = fields.pop("output")
    trigger = (
        await connection.execute(
            select(
                run_messages.c.message_id,
                run_messages.c.kind,
                run_messages.c.sender,
                run_messages.c.to,
                run_messages.c.payload_type,
                run_messages.c.payload,
                run_messages.c.chain,
                run_messages.c.thread_id,
            )
            .where(
                run_messages.c.tenant_id == tenant_id,
                run_messages.c.run_id == run_id,
                run_messages.c.kind == "trigger",
            )
            .order_by(run_messages.c.sequence)
            .limit(1)
        )
    ).first()
    step_rows = await connection.execute(
        select(run_steps)
        .where(run_steps.c.tenant_id == tenant_id, run_steps.c.run_id == run_id)
        .order_by(run_steps.c.sequence, run_steps.c.entry)
    )
    steps = [
        msgspec.convert(
            {
                # Column names are str subclasses, which msgspec does not take.
                str(key): value
                for key, value in step._asdict().items()
                if key not in ("tenant_id", "run_id", "sent_count")
            },
            RunStep,
            strict=False,
        )
        for step in step_rows
    ]
    return RunDetail(
        run=RunSummary(**fields),
        output=output,
        input=RunMessage(**trigger._mapping) if trigger else None,
        steps=steps,
    )


async def read_run_flow(
    connection: AsyncConnection, tenant_id: str, run_id: str
) -> str | None:
    """The flow a tenant's run belongs to; ``None`` if it has no such run."""
    return (
        await connection.execute(
            select(runs.c.flow_id).where(
                runs.c.tenant_id == tenant_id, runs.c.run_id == run_id
            )
        )
    ).scalar_one_or_none()


async def overdue_runs(
    engine: AsyncEngine, now: datetime, *, limit: int = 100
) -> list[tuple[str, str, str]]:
    """Runs still running past their deadline, as ``(tenant, flow, run)``.

    The watchdog's question, asked for all tenants at once: it ends each run it
    finds, through the run's own events. Oldest deadline first.
    """
    query = (
        select(runs.c.tenant_id, runs.c.flow_id, runs.c.run_id)
        .where(runs.c.status == "running", runs.c.deadline < now)
        .order_by(runs.c.deadline)
        .limit(limit)
    )
    async with engine.connect() as connection:
        rows = await connection.execute(query)
        return [(row.tenant_id, row.flow_id, row.run_id) for row in rows]
