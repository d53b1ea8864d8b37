"""The flows read model follows creates, revisions, status and deletion."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nats.aio.client import Client as NatsClient
from sqlalchemy.ext.asyncio import AsyncEngine

from nextra.app.flows import FlowCommands
from nextra.app.tenants import TenantCommands
from nextra.events.envelope import CommandContext
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.ids import new_id
from nextra.readmodels.checkpoints import wait_projected
from nextra.readmodels.flows import read_flow, read_flow_revision, read_flow_revisions
from nextra.readmodels.projection import load_catalogue
from nextra.readmodels.runner import ProjectionRunner
from tests.app.test_flows import YAML, validate


async def test_flows_and_revisions_are_projected_per_tenant(
    root: Path, engine: AsyncEngine, store: JetStreamEventStore, nc: NatsClient
) -> None:
    spec = next(s for s in load_catalogue(root / "projections") if s.name == "flows")
    tenant_id, other = new_id(), new_id()
    for tenant in (tenant_id, other):
        await TenantCommands(store).create(
            tenant, "T", tier="pro", context=CommandContext()
        )
    commands = FlowCommands(store, validate)
    saved = await commands.create(
        tenant_id,
        name="Demo",
        organism_yaml=YAML,
        context=CommandContext(actor="user:u1"),
    )
    await commands.revise(
        tenant_id,
        saved.flow_id,
        expected_revision=1,
        name="Demo 2",
        organism_yaml=YAML.replace("Say hello.", "Say hi."),
        context=CommandContext(actor="user:u2"),
    )
    started = await commands.start(tenant_id, saved.flow_id, context=CommandContext())
    doomed = await commands.create(
        tenant_id, name="Doomed", organism_yaml=YAML, context=CommandContext()
    )
    deleted = await commands.delete(tenant_id, doomed.flow_id, context=CommandContext())
    assert started.result is not None and deleted.result is not None

    stopping = asyncio.Event()
    runner = ProjectionRunner(spec, spec.create(), engine, store, nc)
    task = asyncio.create_task(runner.run(stopping))
    try:
        last = max(started.result.last_sequence, deleted.result.last_sequence)
        await wait_projected(engine, "flows", last, timeout=10)
    finally:
        stopping.set()
        await task

    async with engine.connect() as connection:
        flow = await read_flow(connection, tenant_id, saved.flow_id)
        revisions = await read_flow_revisions(connection, tenant_id, saved.flow_id)
        first = await read_flow_revision(connection, tenant_id, saved.flow_id, 1)
        gone = await read_flow(connection, tenant_id, doomed.flow_id)
        foreign = await read_flow(connection, other, saved.flow_id)
        foreign_revisions = await read_flow_revisions(connection, other, saved.flow_id)

    assert flow is not None
    assert (flow.name, flow.revision, flow.status) == ("Demo 2", 2, "running")
    assert [r.revision for r in revisions] == [1, 2]
    assert [r.actor for r in revisions] == ["user:u1", "user:u2"]
    assert revisions[1].changes == ["listener greeter changed: prompt"]
    assert first is not None
    assert [node["id"] for node in first.canvas["nodes"]] == ["trigger", "greeter"]
    assert gone is None
    assert foreign is None and foreign_revisions == []
