"""The flow API: create, read, revise, start, stop and delete a tenant's flows."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from litestar import Controller, Request, Response, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter

from nextra.api.consistency import projected
from nextra.api.context import ApiContext
from nextra.api.identity import Principal
from nextra.app.flows import FlowSaved
from nextra.domain.flows.model import Issue
from nextra.events.envelope import CommandContext
from nextra.kernel.errors import NextraError, NotFoundError, PreconditionFailed
from nextra.readmodels.flows import (
    FlowRevision,
    FlowSummary,
    read_flow,
    read_flow_revision,
    read_flow_revisions,
    read_flows,
)

__all__ = ("ID_PATTERN", "FlowsController", "PreconditionRequired")

FlowName = Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
Identifier = Annotated[str, PathParameter(pattern=ID_PATTERN)]


class FlowInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A flow as a client writes it: YAML, canvas state, or both."""

    name: FlowName
    description: Annotated[str, msgspec.Meta(max_length=2000)] = ""
    organism_yaml: str | None = None
    canvas: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        # PostgreSQL text cannot hold U+0000: refuse it here, by field.
        for field in ("name", "description", "organism_yaml"):
            if "\x00" in (getattr(self, field) or ""):
                message = f"{field} must not contain NUL characters (U+0000)"
                raise ValueError(message)


class IssueOut(msgspec.Struct, kw_only=True):
    code: str
    message: str
    line: int | None
    column: int | None
    listener: str | None
    field: str | None


class FlowOut(msgspec.Struct, kw_only=True):
    """A flow with both forms of its definition."""

    id: str
    name: str
    description: str
    status: str
    revision: int
    organism_yaml: str
    canvas: dict[str, Any]
    created_at: datetime | None = None
    updated_at: datetime | None = None
    warnings: list[IssueOut] = []


class FlowPage(msgspec.Struct, kw_only=True):
    items: list[FlowOut]
    next_cursor: str | None


class FlowStatusOut(msgspec.Struct, kw_only=True):
    id: str
    status: str
    revision: int


class RevisionOut(msgspec.Struct, kw_only=True):
    revision: int
    name: str
    description: str
    organism_yaml: str
    canvas: dict[str, Any]
    changes: list[str]
    actor: str
    recorded_at: datetime


def _etag(flow_id: str, revision: int) -> str:
    return f'"{flow_id}.r{revision}"'


class PreconditionRequired(NextraError):
    """An update came without If-Match: it could overwrite someone's edit."""

    code = "precondition-required"


def _revision_from(if_match: str | None, flow_id: str) -> int | None:
    """The revision an If-Match names; ``None`` for ``*``."""
    if if_match is None:
        message = "send If-Match with the ETag of the revision you edited"
        raise PreconditionRequired(message, expected="If-Match", where="If-Match")
    value = if_match.strip().removeprefix("W/")
    if value == "*":
        return None
    prefix = f'"{flow_id}.r'
    if (
        value.startswith(prefix)
        and value.endswith('"')
        and value[len(prefix) : -1].isdigit()
    ):
        return int(value[len(prefix) : -1])
    message = f"If-Match {if_match!r} is not an ETag of flow {flow_id}"
    raise PreconditionFailed(message, got=if_match, where="If-Match")


def _issues(issues: list[Issue]) -> list[IssueOut]:
    return [
        IssueOut(
            code=i.code,
            message=i.message,
            line=i.line,
            column=i.column,
            listener=i.listener,
            field=i.field,
        )
        for i in issues
    ]


def _from_summary(flow: FlowSummary) -> FlowOut:
    return FlowOut(
        id=flow.flow_id,
        name=flow.name,
        description=flow.description,
        status=flow.status,
        revision=flow.revision,
        organism_yaml=flow.organism_yaml,
        canvas=flow.canvas,
        created_at=flow.created_at,
        updated_at=flow.updated_at,
    )


def _command(request: Request[Any, Any, Any], principal: Principal) -> CommandContext:
    # An Idempotency-Key makes a retried request the same command.
    key = request.headers.get("idempotency-key")
    fields: dict[str, Any] = {
        "actor": principal.actor,
        "correlation_id": request.headers.get("x-correlation-id"),
    }
    if key:
        fields["command_id"] = f"{principal.tenant_id}.{key}"[:64]
    return CommandContext(**fields)


async def _projected(context: ApiContext, saved: FlowSaved) -> None:
    await projected(context, "flows", saved.result)


async def _load(context: ApiContext, principal: Principal, flow_id: str) -> FlowOut:
    async with context.engine.connect() as connection:
        flow = await read_flow(connection, principal.tenant_id, flow_id)
    if flow is None:
        message = f"flow {flow_id} does not exist"
        raise NotFoundError(message, where=f"flow/{flow_id}")
    return _from_summary(flow)


def _document(flow: FlowOut, warnings: list[Issue], status: int) -> Response[FlowOut]:
    flow.warnings = _issues(warnings)
    return Response(
        flow, status_code=status, headers={"ETag": _etag(flow.id, flow.revision)}
    )


class FlowsController(Controller):
    path = "/api/flows"
    tags = ["flows"]
    security = [{"bearer": []}]

    @get("/")
    async def list_flows(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        status: FromQuery[Literal["running", "stopped"] | None] = None,
        name: Annotated[
            str | None, QueryParameter(max_length=200, pattern=r"^[^\x00]*$")
        ] = None,
        cursor: Annotated[str | None, QueryParameter(pattern=ID_PATTERN)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=200)] = 50,
    ) -> FlowPage:
        """The tenant's flows, newest first, ``limit`` at a time.

        ``name`` matches names containing it (case-insensitive); pass
        ``next_cursor`` back as ``cursor`` for the next page.
        """
        async with context.engine.connect() as connection:
            rows = await read_flows(
                connection,
                principal.tenant_id,
                status=status,
                name=name,
                before=cursor,
                limit=limit + 1,
            )
        page = rows[:limit]
        more = len(rows) > limit
        return FlowPage(
            items=[_from_summary(row) for row in page],
            next_cursor=page[-1].flow_id if more and page else None,
        )

    @post("/")
    async def create_flow(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        data: JSONBody[FlowInput],
    ) -> Response[FlowOut]:
        """Create a flow from YAML or canvas state; both forms come back."""
        saved = await context.flows.create(
            principal.tenant_id,
            name=data.name,
            description=data.description,
            organism_yaml=data.organism_yaml,
            canvas=data.canvas,
            context=_command(request, principal),
        )
        await _projected(context, saved)
        flow = await _load(context, principal, saved.flow_id)
        response = _document(flow, saved.warnings, 201)
        response.headers["Location"] = f"/api/flows/{saved.flow_id}"
        return response

    @get("/{flow_id:str}")
    async def read_flow(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> Response[FlowOut]:
        """One flow, with its current revision's ETag."""
        return _document(await _load(context, principal, flow_id), [], 200)

    @put("/{flow_id:str}")
    async def update_flow(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
        data: JSONBody[FlowInput],
    ) -> Response[FlowOut]:
        """Save a new revision. ``If-Match`` must carry the ETag you edited.

        A stale ETag is refused with 412 and the current revision; nothing is
        overwritten silently.
        """
        expected = _revision_from(request.headers.get("if-match"), flow_id)
        saved = await context.flows.revise(
            principal.tenant_id,
            flow_id,
            expected_revision=expected,
            name=data.name,
            description=data.description,
            organism_yaml=data.organism_yaml,
            canvas=data.canvas,
            context=_command(request, principal),
        )
        await _projected(context, saved)
        return _document(await _load(context, principal, flow_id), saved.warnings, 200)

    @delete("/{flow_id:str}", status_code=204)
    async def delete_flow(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> None:
        """Delete a flow; its history stays in the event stream."""
        saved = await context.flows.delete(
            principal.tenant_id, flow_id, context=_command(request, principal)
        )
        await _projected(context, saved)

    @post("/{flow_id:str}/start", status_code=200)
    async def start_flow(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> FlowStatusOut:
        """Let the flow's triggers through."""
        saved = await context.flows.start(
            principal.tenant_id, flow_id, context=_command(request, principal)
        )
        await _projected(context, saved)
        return FlowStatusOut(id=flow_id, status="running", revision=saved.revision)

    @post("/{flow_id:str}/stop", status_code=200)
    async def stop_flow(
        self,
        request: Request[Any, Any, Any],
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> FlowStatusOut:
        """Refuse the flow's triggers until it is started again."""
        saved = await context.flows.stop(
            principal.tenant_id, flow_id, context=_command(request, principal)
        )
        await _projected(context, saved)
        return FlowStatusOut(id=flow_id, status="stopped", revision=saved.revision)

    @get("/{flow_id:str}/status")
    async def flow_status(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> FlowStatusOut:
        flow = await _load(context, principal, flow_id)
        return FlowStatusOut(id=flow.id, status=flow.status, revision=flow.revision)

    @get("/{flow_id:str}/revisions")
    async def list_revisions(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
    ) -> list[RevisionOut]:
        """Every revision: who saved it, when, and what changed."""
        async with context.engine.connect() as connection:
            flow = await read_flow(connection, principal.tenant_id, flow_id)
            revisions = await read_flow_revisions(
                connection, principal.tenant_id, flow_id
            )
        if flow is None:
            message = f"flow {flow_id} does not exist"
            raise NotFoundError(message, where=f"flow/{flow_id}")
        return [_revision(r) for r in revisions]

    @get("/{flow_id:str}/revisions/{number:int}")
    async def read_revision(
        self,
        context: NamedDependency[ApiContext],
        principal: NamedDependency[Principal],
        flow_id: Identifier,
        number: Annotated[int, PathParameter(ge=1, le=1_000_000)],
    ) -> RevisionOut:
        async with context.engine.connect() as connection:
            flow = await read_flow(connection, principal.tenant_id, flow_id)
            revision = await read_flow_revision(
                connection, principal.tenant_id, flow_id, number
            )
        if flow is None or revision is None:
            message = f"flow {flow_id} has no revision {number}"
            raise NotFoundError(message, where=f"flow/{flow_id}/revisions/{number}")
        return _revision(revision)


def _revision(revision: FlowRevision) -> RevisionOut:
    return RevisionOut(
        revision=revision.revision,
        name=revision.name,
        description=revision.description,
        organism_yaml=revision.organism_yaml,
        canvas=revision.canvas,
        changes=revision.changes,
        actor=revision.actor,
        recorded_at=revision.recorded_at,
    )
