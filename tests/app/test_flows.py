"""Flow commands against a real JetStream: limits under concurrency, revisions."""

from __future__ import annotations

import asyncio

import pytest

from nextra.app.flows import FlowCommands
from nextra.app.tenants import TenantCommands
from nextra.domain.flows import HOSTED, FlowInvalid, ValidationReport, validate_organism
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.flows import FlowCreated, FlowDeleted, FlowRevised, FlowStarted
from nextra.events.tenants import Tier
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.errors import LimitExceeded, NotFoundError, PreconditionFailed
from nextra.kernel.ids import new_id

YAML = """\
organism:
  name: demo
listeners:
  - name: greeter
    description: Greets people
    handler: builtin:llm
    payload_class: TextInput
    agent: true
    prompt: Say hello.
"""


def validate(text: str) -> ValidationReport:
    return validate_organism(text, policy=HOSTED)


async def tenant_on(store: JetStreamEventStore, tier: Tier) -> str:
    tenant_id = new_id()
    await TenantCommands(store).create(
        tenant_id, "T", tier=tier, context=CommandContext()
    )
    return tenant_id


@pytest.fixture
def commands(store: JetStreamEventStore) -> FlowCommands:
    return FlowCommands(store, validate)


async def test_created_flow_is_revision_one_with_its_yaml(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")

    saved = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=CommandContext()
    )

    [created] = await store.load(AggregateRef(tenant_id, "flow", saved.flow_id))
    assert isinstance(created.event, FlowCreated)
    assert created.event.organism_yaml == YAML
    assert saved.revision == 1
    assert [node["id"] for node in saved.canvas["nodes"]][-1] == "greeter"


async def test_invalid_yaml_is_refused_and_nothing_is_stored(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    before = await store.last_sequence()

    with pytest.raises(FlowInvalid) as caught:
        await commands.create(
            tenant_id,
            name="X",
            organism_yaml=YAML.replace("builtin:llm", "builtin:nope"),
            context=CommandContext(),
        )

    [error] = caught.value.report.errors
    assert (error.line, error.listener) == (6, "greeter")
    assert await store.last_sequence() == before


async def test_flow_limit_holds_under_concurrent_creates(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    """Ten creates race on a tier allowing ten: exactly ten win, five are refused."""
    tenant_id = await tenant_on(store, "paid")

    outcomes = await asyncio.gather(
        *(
            commands.create(
                tenant_id, name=f"f{n}", organism_yaml=YAML, context=CommandContext()
            )
            for n in range(15)
        ),
        return_exceptions=True,
    )

    refused = [o for o in outcomes if isinstance(o, LimitExceeded)]
    created = [o for o in outcomes if not isinstance(o, BaseException)]
    assert (len(created), len(refused)) == (10, 5)
    assert refused[0].where == "tier.flows"


async def test_deleting_a_flow_frees_its_place(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "free")
    first = await commands.create(
        tenant_id, name="one", organism_yaml=YAML, context=CommandContext()
    )
    with pytest.raises(LimitExceeded):
        await commands.create(
            tenant_id, name="two", organism_yaml=YAML, context=CommandContext()
        )

    await commands.delete(tenant_id, first.flow_id, context=CommandContext())
    second = await commands.create(
        tenant_id, name="two", organism_yaml=YAML, context=CommandContext()
    )

    history = await store.load(AggregateRef(tenant_id, "flow", first.flow_id))
    assert isinstance(history[-1].event, FlowDeleted)
    assert second.flow_id != first.flow_id
    with pytest.raises(NotFoundError):
        await commands.start(tenant_id, first.flow_id, context=CommandContext())


async def test_stale_revision_is_refused_with_the_current_one(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    saved = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=CommandContext()
    )
    second = await commands.revise(
        tenant_id,
        saved.flow_id,
        expected_revision=1,
        name="Demo",
        organism_yaml=YAML.replace("Say hello.", "Say hi."),
        context=CommandContext(),
    )

    with pytest.raises(PreconditionFailed) as caught:
        await commands.revise(
            tenant_id,
            saved.flow_id,
            expected_revision=1,
            name="Demo",
            organism_yaml=YAML + "# someone else\n",
            context=CommandContext(),
        )

    assert second.revision == 2
    assert (caught.value.expected, caught.value.got) == (1, 2)
    history = await store.load(AggregateRef(tenant_id, "flow", saved.flow_id))
    revised = history[-1].event
    assert isinstance(revised, FlowRevised)
    assert revised.changes == ["listener greeter changed: prompt"]


async def test_saving_an_unchanged_revision_records_nothing(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    saved = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=CommandContext()
    )

    again = await commands.revise(
        tenant_id,
        saved.flow_id,
        expected_revision=1,
        name="Demo",
        organism_yaml=YAML,
        context=CommandContext(),
    )

    assert (again.result, again.revision) == (None, 1)


async def test_start_and_stop_are_idempotent(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    saved = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=CommandContext()
    )

    first = await commands.start(tenant_id, saved.flow_id, context=CommandContext())
    second = await commands.start(tenant_id, saved.flow_id, context=CommandContext())
    await commands.stop(tenant_id, saved.flow_id, context=CommandContext())

    assert first.result is not None and second.result is None
    history = await store.load(AggregateRef(tenant_id, "flow", saved.flow_id))
    assert [type(r.event).__name__ for r in history] == [
        "FlowCreated",
        "FlowStarted",
        "FlowStopped",
    ]
    assert isinstance(history[1].event, FlowStarted)


async def test_a_retried_create_returns_the_same_flow(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    context = CommandContext()

    first = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=context
    )
    again = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=context
    )

    assert again.flow_id == first.flow_id
    assert again.result is not None and again.result.duplicate


async def test_other_tenants_flows_are_not_found(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    owner, stranger = await tenant_on(store, "pro"), await tenant_on(store, "pro")
    saved = await commands.create(
        owner, name="Demo", organism_yaml=YAML, context=CommandContext()
    )

    with pytest.raises(NotFoundError):
        await commands.start(stranger, saved.flow_id, context=CommandContext())
    with pytest.raises(NotFoundError):
        await commands.delete(stranger, saved.flow_id, context=CommandContext())


async def test_moving_a_node_on_the_canvas_keeps_the_yaml_text(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    saved = await commands.create(
        tenant_id, name="Demo", organism_yaml=YAML, context=CommandContext()
    )
    canvas = saved.canvas
    for node in canvas["nodes"]:
        if node["id"] == "greeter":
            node["position"] = {"x": 480.0, "y": 120.0}

    moved = await commands.revise(
        tenant_id,
        saved.flow_id,
        expected_revision=1,
        name="Demo",
        canvas=canvas,
        context=CommandContext(),
    )
    edited = await commands.revise(
        tenant_id,
        saved.flow_id,
        expected_revision=2,
        name="Demo",
        organism_yaml=YAML.replace("Greets people", "Greets everyone"),
        context=CommandContext(),
    )

    assert moved.revision == 2 and moved.organism_yaml == YAML
    positions = {n["id"]: n["position"] for n in edited.canvas["nodes"]}
    assert positions["greeter"] == {"x": 480.0, "y": 120.0}
    assert "Greets everyone" in edited.organism_yaml


async def test_a_flow_can_be_created_from_a_canvas_alone(
    store: JetStreamEventStore, commands: FlowCommands
) -> None:
    tenant_id = await tenant_on(store, "pro")
    drawn = await commands.create(
        tenant_id, name="Drawn", organism_yaml=YAML, context=CommandContext()
    )

    copy = await commands.create(
        tenant_id, name="My copy!", canvas=drawn.canvas, context=CommandContext()
    )

    assert "name: My-copy" in copy.organism_yaml
    report = validate(copy.organism_yaml)
    assert report.errors == ()
    assert [listener.name for listener in report.organism.listeners] == ["greeter"]  # type: ignore[union-attr]
