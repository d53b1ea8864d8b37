"""Live feeds over WebSockets, read straight from the runs stream.

``/api/runs/{run_id}/live`` sends the run's events so far, then each new one,
and closes after the run's end. ``/api/flows/{flow_id}/live`` sends, from the
moment it is connected, each run of the flow that starts or ends and each line
its handlers log.

A socket holds no JetStream consumer, so open feeds cannot use up the consumers
the runs stream allows, which flows need to run. It reads the stream with
direct gets, filtered to the caller's tenant and flow or run, and a core NATS
subscription on the same subjects tells it when to read again. That message
only wakes it: what it sends is always read back from the stream, so an append
the stream refused is never shown. Callers
authenticate as on HTTP routes (``Authorization: Bearer``), or with
``?access_token=`` where a browser cannot set headers. A caller whose tenant has
no such run or flow gets an error frame and close code 1008, exactly as for an
id that never existed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterator,
)
from datetime import datetime
from typing import Any

import msgspec
import nats.errors
from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from litestar.exceptions import WebSocketDisconnect
from litestar.status_codes import (
    WS_1000_NORMAL_CLOSURE,
    WS_1008_POLICY_VIOLATION,
    WS_1011_INTERNAL_ERROR,
)
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg

from nextra.api.context import ApiContext
from nextra.api.flows import Identifier
from nextra.api.identity import (
    Forbidden,
    Principal,
    authenticate,
    socket_token,
    still_allowed,
)
from nextra.auth.errors import AuthenticationError, AuthenticationUnavailable
from nextra.events.envelope import RecordedEvent
from nextra.events.runs import (
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunTriggered,
    StepCompleted,
)
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import (
    aggregate_subject,
    flow_runs_filter,
    run_aggregate,
)
from nextra.kernel.errors import EventContractError, EventStoreError, NotFoundError
from nextra.kernel.logging import get_logger
from nextra.readmodels.flows import read_flow
from nextra.readmodels.runs import read_run_flow

__all__ = ("flow_live", "run_live")

log = get_logger("nextra.api")

WS_1013_TRY_AGAIN_LATER = 1013
# A feed reads the stream again after this long without a wake-up.
_REREAD_SECONDS = 5.0
# How often an open feed checks that its caller may still read it, and how many
# checks in a row may fail to be made before it closes.
_RECHECK_SECONDS = 1.0
_RECHECK_FAILURES = 5

_NATS_ERRORS = (nats.errors.Error, OSError, TimeoutError)
# How a send finds the client gone: Litestar's error, or uvicorn's OSError
# (ClientDisconnected) when the connection dropped under it.
_GONE = (WebSocketDisconnect, OSError)
_encoder = msgspec.json.Encoder()
_TERMINAL = (RunCompleted, RunFailed, RunCancelled)


class _Refused(Exception):
    """The socket may not be served; say why, then close with ``code``."""

    def __init__(self, status: int, detail: str, code: int) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.code = code


class _Frame(msgspec.Struct, kw_only=True, omit_defaults=True):
    type: str
    run_id: str | None = None
    sequence: int
    recorded_at: datetime
    data: Any


async def _admit(socket: WebSocket[Any, Any, Any], context: ApiContext) -> Principal:
    try:
        return await authenticate(socket_token(socket), context)
    except AuthenticationError as error:
        raise _Refused(401, error.message, WS_1008_POLICY_VIOLATION) from None
    except Forbidden as error:
        raise _Refused(403, error.message, WS_1008_POLICY_VIOLATION) from None
    except AuthenticationUnavailable as error:
        raise _Refused(503, error.message, WS_1013_TRY_AGAIN_LATER) from None


async def _run_flow(context: ApiContext, tenant_id: str, run_id: str) -> str | None:
    # From the run's own events, not the read model: a run triggered a moment
    # ago is found at once, and a missing one is refused as fast.
    if context.runs is not None:
        try:
            run = await context.runs.locate(tenant_id, run_id)
        except NotFoundError:
            return None
        return run.partition
    async with context.engine.connect() as connection:
        return await read_run_flow(connection, tenant_id, run_id)


def _stores(context: ApiContext) -> tuple[NatsClient, JetStreamEventStore]:
    if context.nats is None or context.runs_store is None:
        message = "live feeds are not available in this deployment"
        raise _Refused(503, message, WS_1011_INTERNAL_ERROR)
    return context.nats, context.runs_store


@contextlib.asynccontextmanager
async def _following(
    nc: NatsClient, store: JetStreamEventStore, subject: str, *, after: int | None
) -> AsyncIterator[tuple[int, AsyncIterator[RecordedEvent]]]:
    """The sequence it starts after, and the events on ``subject`` from there.

    ``after=None`` starts after the newest event stored now. The subscription
    is made before the first read, so an event stored in between is read
    rather than missed.
    """
    woken = asyncio.Event()

    async def wake(_: Msg) -> None:
        woken.set()

    try:
        subscription = await nc.subscribe(subject, cb=wake)
    except _NATS_ERRORS as error:
        raise _unavailable(error) from None
    try:
        start = after if after is not None else await store.last_sequence(subject)
    except EventStoreError as error:
        with contextlib.suppress(*_NATS_ERRORS):
            await subscription.unsubscribe()
        raise _unavailable(error) from None
    events = _read_on(store, subject, start, woken)
    try:
        yield start, events
    finally:
        try:
            await events.aclose()
        finally:
            with contextlib.suppress(*_NATS_ERRORS):
                await subscription.unsubscribe()


def _unavailable(error: Exception) -> _Refused:
    log.warning("api.live_unavailable", error=str(error))
    message = "the run events cannot be read right now; try again"
    return _Refused(503, message, WS_1013_TRY_AGAIN_LATER)


async def _read_on(
    store: JetStreamEventStore, subject: str, after: int, woken: asyncio.Event
) -> AsyncGenerator[RecordedEvent, None]:
    """Each event after ``after``, read again whenever ``woken`` is set."""

    def skip(sequence: int, error: EventContractError) -> None:
        log.warning("api.live_undecodable", sequence=sequence, error=error.message)

    while True:
        # Cleared before reading: a wake-up during the read is read next time.
        woken.clear()
        async for recorded in store.read(
            after=after, subject=subject, undecodable=skip
        ):
            after = recorded.sequence
            yield recorded
        # Wake-ups are best effort (a slow client's may be dropped), so the
        # stream is read again now and then anyway.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(woken.wait(), _REREAD_SECONDS)


async def _until_gone(socket: WebSocket[Any, Any, Any]) -> None:
    """Return when the client disconnects; what it sends is ignored."""
    with contextlib.suppress(WebSocketDisconnect):
        while (await socket.receive())["type"] != "websocket.disconnect":
            pass


async def _forward(
    socket: WebSocket[Any, Any, Any],
    context: ApiContext,
    principal: Principal,
    events: AsyncIterator[RecordedEvent],
    frames: Callable[[RecordedEvent], tuple[list[_Frame], bool]],
) -> None:
    """Send each event's frames until the feed is over or the client leaves.

    ``frames(recorded)`` returns the frames for an event and whether it was the
    feed's last. A caller whose credentials stop being valid (a revoked key, a
    member removed) is refused within a second.
    """
    gone = asyncio.create_task(_until_gone(socket))
    revoked = asyncio.create_task(_until_revoked(socket, context, principal))
    arrived: asyncio.Future[RecordedEvent] | None = None
    try:
        while True:
            arrived = asyncio.ensure_future(anext(events))
            await asyncio.wait(
                {arrived, gone, revoked}, return_when=asyncio.FIRST_COMPLETED
            )
            if revoked.done():
                raise revoked.result()
            if gone.done():
                return
            try:
                recorded = arrived.result()
            except EventStoreError as error:
                raise _unavailable(error) from None
            batch, last = frames(recorded)
            for frame in batch:
                if not await _send(socket, frame):
                    return
            if last:
                with contextlib.suppress(*_GONE):
                    await socket.close(WS_1000_NORMAL_CLOSURE)
                return
    finally:
        gone.cancel()
        revoked.cancel()
        if arrived is not None and not arrived.done():
            arrived.cancel()
            # The read must be over before its generator is closed; this waits
            # for it even when the feed itself is being cancelled.
            await asyncio.wait({arrived})


async def _until_revoked(
    socket: WebSocket[Any, Any, Any], context: ApiContext, principal: Principal
) -> _Refused:
    """Check every second that the caller may still read, until it may not.

    Mostly a lookup in the API's tenant cache, which every API process empties
    for a tenant as soon as a key is revoked or a member removed. A check that
    cannot be made (Postgres unreachable) is tried again; after a few seconds
    of that the feed closes with "try again later" rather than go on unchecked.
    """
    token = socket_token(socket)
    failures = 0
    while True:
        await asyncio.sleep(_RECHECK_SECONDS)
        try:
            await still_allowed(token, principal, context)
        except AuthenticationError as error:
            return _Refused(401, error.message, WS_1008_POLICY_VIOLATION)
        except Forbidden as error:
            return _Refused(403, error.message, WS_1008_POLICY_VIOLATION)
        except Exception as error:  # noqa: BLE001 - checked again next second
            failures += 1
            log.warning("api.live_recheck_failed", error=str(error), failures=failures)
            if failures >= _RECHECK_FAILURES:
                message = "the caller's access cannot be checked right now; try again"
                return _Refused(503, message, WS_1013_TRY_AGAIN_LATER)
        else:
            failures = 0


async def _serve(
    socket: WebSocket[Any, Any, Any], feed: Callable[[], Awaitable[None]]
) -> None:
    """Accept the socket and run ``feed``, turning refusals into close codes."""
    await socket.accept()
    try:
        await feed()
    except _Refused as refused:
        error = {"type": "error", "status": refused.status, "detail": refused.detail}
        if await _send(socket, error):
            with contextlib.suppress(*_GONE):
                await socket.close(refused.code, refused.detail[:120])
    except WebSocketDisconnect:
        return


async def _send(socket: WebSocket[Any, Any, Any], frame: Any) -> bool:
    """Send one JSON text frame; ``False`` if the client is gone."""
    try:
        await socket.send_text(_encoder.encode(frame).decode())
    except _GONE:
        return False
    return True


def _run_frames(recorded: RecordedEvent) -> tuple[list[_Frame], bool]:
    frame = _Frame(
        type=recorded.event_type,
        sequence=recorded.sequence,
        recorded_at=recorded.recorded_at,
        data=recorded.event,
    )
    return [frame], isinstance(recorded.event, _TERMINAL)


def _flow_frames(recorded: RecordedEvent) -> tuple[list[_Frame], bool]:
    event = recorded.event
    run_id = recorded.aggregate.aggregate_id
    if isinstance(event, RunTriggered | RunCompleted | RunFailed | RunCancelled):
        frame = _Frame(
            type=recorded.event_type,
            run_id=run_id,
            sequence=recorded.sequence,
            recorded_at=recorded.recorded_at,
            data=event,
        )
        return [frame], False
    if isinstance(event, StepCompleted):
        return list(_log_frames(recorded, event)), False
    return [], False


def _log_frames(recorded: RecordedEvent, event: StepCompleted) -> Iterator[_Frame]:
    for line in event.logs:
        yield _Frame(
            type="run.log",
            run_id=recorded.aggregate.aggregate_id,
            sequence=recorded.sequence,
            recorded_at=recorded.recorded_at,
            data={
                "message_id": event.message_id,
                "listener": event.listener,
                "entry": event.entry,
                "at": line.at,
                "level": line.level,
                "message": line.message,
            },
        )


@websocket("/api/runs/{run_id:str}/live")
async def run_live(
    socket: WebSocket[Any, Any, Any],
    context: NamedDependency[ApiContext],
    run_id: Identifier,
) -> None:
    """The run's events so far, then live ones; closed after the run ends.

    Each text frame is ``{"type", "sequence", "recorded_at", "data"}``, with
    the event as ``data``.
    """

    async def feed() -> None:
        nc, store = _stores(context)
        principal = await _admit(socket, context)
        flow_id = await _run_flow(context, principal.tenant_id, run_id)
        if flow_id is None:
            message = f"run {run_id} does not exist"
            raise _Refused(404, message, WS_1008_POLICY_VIOLATION)
        subject = aggregate_subject(run_aggregate(principal.tenant_id, flow_id, run_id))
        async with _following(nc, store, subject, after=0) as (_, events):
            await _forward(socket, context, principal, events, _run_frames)

    await _serve(socket, feed)


@websocket("/api/flows/{flow_id:str}/live")
async def flow_live(
    socket: WebSocket[Any, Any, Any],
    context: NamedDependency[ApiContext],
    flow_id: Identifier,
) -> None:
    """From now on: each run of the flow that starts or ends, and each log line.

    The first frame, ``{"type": "feed.ready", "sequence": N}``, says the feed is
    following: every event stored after stream sequence ``N`` is sent. Then
    frames are ``{"type", "run_id", "sequence", "recorded_at", "data"}``: a run's
    event for ``run.triggered``, ``run.completed``, ``run.failed`` and
    ``run.cancelled``; ``{"message_id", "listener", "entry", "at", "level",
    "message"}`` for ``run.log``. Open until the client leaves.
    """

    async def feed() -> None:
        nc, store = _stores(context)
        principal = await _admit(socket, context)
        async with context.engine.connect() as connection:
            flow = await read_flow(connection, principal.tenant_id, flow_id)
        if flow is None:
            message = f"flow {flow_id} does not exist"
            raise _Refused(404, message, WS_1008_POLICY_VIOLATION)
        subject = flow_runs_filter(principal.tenant_id, flow_id)
        async with _following(nc, store, subject, after=None) as (start, events):
            if not await _send(socket, {"type": "feed.ready", "sequence": start}):
                return
            await _forward(socket, context, principal, events, _flow_frames)

    await _serve(socket, feed)
