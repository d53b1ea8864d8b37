"""Starting and cancelling runs: manual triggers and the cancel button."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from nats.aio.msg import Msg

from nextra.api.context import ApiContext
from nextra.api.identity import Principal
from nextra.app.runs import RunCommands, Triggered, new_run_id
from nextra.events.tenants import Tier
from nextra.eventstore.headers import EVENT_TYPE
from nextra.eventstore.subjects import run_aggregate, runs_subject
from nextra.kernel.errors import ConfigurationError
from nextra.readmodels.tenants import read_tenant

__all__ = ("RunsController", "TriggersController")

ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Identifier = Annotated[str, PathParameter(pattern=ID_PATTERN)]
MAX_WAIT = 60.0
_ENDINGS = {"run.completed", "run.failed", "run.cancelled"}
# How long an end that was heard may take to be found in the stream.
_READ_BACK_SECONDS = 1.0


class RunInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """What a manual trigger sends to the flow's entry listener.

    Either ``payload`` (typed JSON, with ``payload_type`` naming its type when
    the entry listener takes more than one), or ``text``, which arrives as a
    ``TextInput`` from the caller.
    """

    payload: dict[str, Any] | None = None
    payload_type: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = (
        None
    )
    text: str | None = None

    def __post_init__(self) -> None:
        if (self.payload is None) == (self.text is None):
            message = "send exactly one of 'payload' and 'text'"
            raise ValueError(message)
        if self.text is not None and "\x00" in self.text:
            message = "text must not contain NUL characters (U+0000)"
            raise ValueError(message)


class RunStarted(msgspec.Struct, kw_only=True):
    """A stored trigger, and the run's end when the caller waited for it."""

    run_id: str
    flow_id: str
    revision: int
    status: Literal["running", "completed", "failed", "cancelled"]
    output_type: str | None = None
    output: dict[str, Any] | None = None
    error: str | None = None


class RunCancelledOut(msgspec.Struct, kw_only=True):
    run_id: str
    status: Literal["cancelled"]


def _runs(context: ApiContext) -> RunCommands:
    if context.runs is None:
        message = "this API process was started without the run commands"
        raise ConfigurationError(message, where="runs")
    return context.runs


async def _tier(context: ApiContext, tenant_id: str) -> Tier:
    tier = context.tenant_cache.tier(tenant_id)
    if tier is not None:
        return tier
    async with context.engine.connect() as connection:
        tenant = await read_tenant(connection, tenant_id)
    tier = "free"
    if tenant is not None and tenant.tier in ("paid", "pro", "enterprise"):
        tier = tenant.tier  # type: ignore[assignment]
    context.tenant_cache.keep_tier(tenant_id, tier)
    return tier


async def _trigger(
    request: Request[Any, Any, Any],
    context: ApiContext,
    principal: Principal,
    flow_id: str,
    data: RunInput,
    wait: float,
) -> Response[RunStarted]:
    runs = _runs(context)
    tier = await _tier(context, principal.tenant_id)
    key = request.headers.get("idempotency-key")
    run_id = new_run_id(principal.tenant_id, flow_id, key)
    payload: dict[str, Any] | str = data.text if data.text is not None else {}
    if data.payload is not None:
        payload = data.payload

    heard: asyncio.Event | None = None
    subscription = None
    if wait and context.nats is not None:
        # Listen before the trigger is stored, so the end cannot slip past.
        heard = asyncio.Event()

        async def on_event(msg: Msg) -> None:
            if (msg.headers or {}).get(EVENT_TYPE, "") in _ENDINGS:
                heard.set()

        subject = runs_subject(principal.tenant_id, flow_id, run_id)
        subscription = await context.nats.subscribe(subject, cb=on_event)
    try:
        triggered = await runs.trigger(
            principal.tenant_id,
            flow_id,
            tier=tier,
            source=principal.actor,
            payload_type=data.payload_type,
            payload=payload,
            idempotency_key=key,
            run_id=run_id,
        )
        if heard is None:
            return _started(triggered, 202)
        if triggered.duplicate:
            # A retry: its run may have ended long before we listened.
            answer = await _waited(runs, principal.tenant_id, triggered)
            if answer.status_code == 200:
                return answer
        return await _until_ended(runs, principal.tenant_id, triggered, heard, wait)
    finally:
        if subscription is not None:
            await subscription.unsubscribe()


async def _until_ended(
    runs: RunCommands,
    tenant_id: str,
    triggered: Triggered,
    heard: asyncio.Event,
    wait: float,
) -> Response[RunStarted]:
    """The run's end as the stream holds it, or ``202`` after ``wait`` seconds.

    A core subscriber also hears appends the stream refused (a cancel that lost
    to the run's completion), so an end that was heard only says when to look;
    the answer is read back from the stream, which may store the end a moment
    after it was heard.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait
    while True:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(heard.wait(), max(0.0, deadline - loop.time()))
        if not heard.is_set():
            return await _waited(runs, tenant_id, triggered)
        heard.clear()
        looking = loop.time() + _READ_BACK_SECONDS
        while True:
            answer = await _waited(runs, tenant_id, triggered)
            if answer.status_code == 200:
                return answer
            if loop.time() >= min(looking, deadline):
                break
            await asyncio.sleep(0.01)
        if loop.time() >= deadline:
            return answer


def _started(triggered: Triggered, status: int) -> Response[RunStarted]:
    body = RunStarted(
        run_id=triggered.run_id,
        flow_id=triggered.flow_id,
        revision=triggered.revision,
        status="running",
    )
    return Response(
        body,
        status_code=status,
        headers={"Location": f"/api/runs/{triggered.run_id}"},
    )


async def _waited(
    runs: RunCommands, tenant_id: str, triggered: Triggered
) -> Response[RunStarted]:
    run = run_aggregate(tenant_id, triggered.flow_id, triggered.run_id)
    state = await runs.journal.state(run)
    runs.journal.forget(run)
    if not state.finished:
        return _started(triggered, 202)
    verdict = state.verdict
    output = verdict.output if verdict is not None else None
    error = None
    if state.status == "failed":
        if verdict is not None and verdict.reason is not None:
            error = f"{verdict.reason}: {verdict.message}"
        elif state.first_error is not None:
            listener, failure = state.first_error
            error = f"handler_error: listener {listener}: {failure.message}"
        else:
            error = "deadline"
    body = RunStarted(
        run_id=triggered.run_id,
        flow_id=triggered.flow_id,
        revision=triggered.revision,
        status=state.status,
        output_type=output.payload_type if output else None,
        output=output.payload if output else None,
        error=error,
    )
    return Response(
        body, status_code=200, headers={"Location": f"/api/runs/{triggered.run_id}"}
    )


WaitSeconds = Annotated[float, QueryParameter(ge=0, le=MAX_WAIT)]
"""Seconds to wait for the run's end; ``0`` answers once the trigger is stored."""


class TriggersController(Controller):
    """Manual triggers: the run button, and the original design's inject route."""

    tags = ["runs"]
    security = [{"bearer": []}]

    @post("/api/flows/{flow_id:str}/runs", status_code=202)
    async def start_run(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
        data: JSONBody[RunInput],
        wait: WaitSeconds = 0,
    ) -> Response[RunStarted]:
        """Start a run of the flow's current revision.

        Answers 202 with the run id once the trigger is stored. With
        ``?wait=SECONDS`` (at most 60) it answers 200 with the run's end and
        output if the run ends in that time, else 202 as without it. An
        ``Idempotency-Key`` makes a retried request the same run.
        """
        return await _trigger(request, context, principal, flow_id, data, wait)

    @post("/api/triggers/{flow_id:str}/inject", status_code=202)
    async def inject(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
        data: JSONBody[RunInput],
        wait: WaitSeconds = 0,
    ) -> Response[RunStarted]:
        """The same as ``POST /api/flows/{flow_id}/runs``, at the original path."""
        return await _trigger(request, context, principal, flow_id, data, wait)


class RunsController(Controller):
    path = "/api/runs"
    tags = ["runs"]
    security = [{"bearer": []}]

    @post("/{run_id:str}/cancel", status_code=200)
    async def cancel_run(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        run_id: Identifier,
    ) -> RunCancelledOut:
        """Stop a run: steps it still owed are not run. 409 if it has ended."""
        await _runs(context).cancel(principal.tenant_id, run_id, actor=principal.actor)
        return RunCancelledOut(run_id=run_id, status="cancelled")
