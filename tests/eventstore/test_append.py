"""Appending to aggregates: versions, conflicts, idempotency, atomic batches."""

from __future__ import annotations

import asyncio

import pytest

from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.tenants import TenantCreated, TenantRenamed, TenantTierChanged
from nextra.eventstore.base import Write
from nextra.eventstore.jetstream import MAX_EVENTS_PER_APPEND, JetStreamEventStore
from nextra.kernel.errors import ConcurrencyError, ValidationError
from nextra.kernel.ids import new_id
from nextra.kernel.tracing import configure_tracing, get_tracer


def tenant(tenant_id: str | None = None) -> AggregateRef:
    tenant_id = tenant_id or new_id()
    return AggregateRef(tenant_id, "tenant", tenant_id)


async def test_append_then_load_returns_events_in_order_with_metadata(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    context = CommandContext(actor="user_1", correlation_id="corr-1")

    first = await store.append(
        aggregate, [TenantCreated(name="Acme")], expected_version=0, context=context
    )
    second = await store.append(
        aggregate,
        [TenantRenamed(name="Acme Inc")],
        expected_version=first.version,
        context=CommandContext(actor="user_2", causation_id="cause"),
    )
    events = await store.load(aggregate)

    assert [e.event for e in events] == [
        TenantCreated(name="Acme"),
        TenantRenamed(name="Acme Inc"),
    ]
    assert [e.sequence for e in events] == [first.last_sequence, second.last_sequence]
    assert events[0].actor == "user_1"
    assert events[0].correlation_id == "corr-1"
    assert events[0].command_id == context.command_id
    assert events[1].causation_id == "cause"
    assert events[0].aggregate == aggregate
    assert events[0].event_id != events[1].event_id


async def test_stale_expected_version_raises_concurrency_error_naming_versions(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    created = await store.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )
    await store.append(
        aggregate,
        [TenantRenamed(name="B")],
        expected_version=created.version,
        context=CommandContext(),
    )

    with pytest.raises(ConcurrencyError) as caught:
        await store.append(
            aggregate,
            [TenantRenamed(name="C")],
            expected_version=created.version,
            context=CommandContext(),
        )

    error = caught.value
    assert error.aggregate == str(aggregate)
    assert error.expected_version == created.version
    assert error.actual_version == created.version + 1
    assert str(aggregate) in error.message
    assert len(await store.load(aggregate)) == 2


async def test_creating_an_existing_aggregate_conflicts(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    await store.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )

    with pytest.raises(ConcurrencyError):
        await store.append(
            aggregate,
            [TenantCreated(name="A")],
            expected_version=0,
            context=CommandContext(),
        )


async def test_concurrent_writers_on_one_version_only_one_wins(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    created = await store.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )

    results = await asyncio.gather(
        *(
            store.append(
                aggregate,
                [TenantRenamed(name=f"name-{i}")],
                expected_version=created.version,
                context=CommandContext(),
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )

    wins = [r for r in results if not isinstance(r, BaseException)]
    assert len(wins) == 1
    assert all(isinstance(r, ConcurrencyError) for r in results if r not in wins)
    assert len(await store.load(aggregate)) == 2


async def test_repeated_command_returns_the_original_result(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    context = CommandContext()
    original = await store.append(
        aggregate, [TenantCreated(name="A")], expected_version=0, context=context
    )

    # The retry still believes the aggregate is new: the server answers the stale
    # version first, and the store recognises its own command.
    again = await store.append(
        aggregate, [TenantCreated(name="A")], expected_version=0, context=context
    )
    unchecked = await store.append(
        aggregate, [TenantCreated(name="A")], expected_version=None, context=context
    )

    assert again.duplicate and unchecked.duplicate
    assert again.last_sequence == original.last_sequence == unchecked.last_sequence
    assert len(await store.load(aggregate)) == 1


async def test_multi_event_append_commits_atomically(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    events = [
        TenantCreated(name="A"),
        TenantRenamed(name="B"),
        TenantTierChanged(tier="pro"),
    ]

    result = await store.append(
        aggregate, events, expected_version=0, context=CommandContext()
    )

    loaded = await store.load(aggregate)
    assert [e.event for e in loaded] == events
    assert result.first_sequence == loaded[0].sequence
    assert result.last_sequence == loaded[-1].sequence
    assert len({e.command_id for e in loaded}) == 1


async def test_multi_event_append_with_stale_version_is_rejected_whole(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    await store.append(
        aggregate,
        [TenantCreated(name="A")],
        expected_version=0,
        context=CommandContext(),
    )
    before = await store.last_sequence()

    with pytest.raises(ConcurrencyError):
        await store.append(
            aggregate,
            [
                TenantRenamed(name="B"),
                TenantTierChanged(tier="pro"),
                TenantRenamed(name="C"),
            ],
            expected_version=0,
            context=CommandContext(),
        )

    assert await store.last_sequence() == before
    assert [e.event for e in await store.load(aggregate)] == [TenantCreated(name="A")]


async def test_repeated_multi_event_command_is_stored_once(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    context = CommandContext()
    events = [TenantCreated(name="A"), TenantRenamed(name="B")]
    original = await store.append(
        aggregate, events, expected_version=0, context=context
    )

    repeated = await store.append(
        aggregate, events, expected_version=None, context=context
    )

    assert repeated.duplicate
    assert (repeated.first_sequence, repeated.last_sequence) == (
        original.first_sequence,
        original.last_sequence,
    )
    assert len(await store.load(aggregate)) == 2


async def test_append_refuses_empty_and_oversized_batches(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    with pytest.raises(ValidationError):
        await store.append(
            aggregate, [], expected_version=None, context=CommandContext()
        )
    too_many = [TenantRenamed(name="x")] * (MAX_EVENTS_PER_APPEND + 1)
    with pytest.raises(ValidationError):
        await store.append(
            aggregate, too_many, expected_version=None, context=CommandContext()
        )


async def test_load_of_hundreds_of_events_spans_several_read_batches(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    other = tenant()
    version = 0
    for start in range(0, 2500, 500):
        batch = [TenantRenamed(name=f"n{i}") for i in range(start, start + 500)]
        result = await store.append(
            aggregate, batch, expected_version=version, context=CommandContext()
        )
        await store.append(
            other,
            [TenantRenamed(name="noise")],
            expected_version=None,
            context=CommandContext(),
        )
        version = result.version

    loaded = await store.load(aggregate)

    assert [e.event.name for e in loaded] == [f"n{i}" for i in range(2500)]  # type: ignore[attr-defined]
    assert loaded[-1].sequence == version


async def test_load_of_unknown_aggregate_is_empty(store: JetStreamEventStore) -> None:
    assert await store.load(tenant()) == []


async def test_headers_carry_the_contract(store: JetStreamEventStore, nc) -> None:  # type: ignore[no-untyped-def]
    aggregate = tenant()
    context = CommandContext(
        actor="u",
        correlation_id="c",
        causation_id="k",
        traceparent="00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    )
    result = await store.append(
        aggregate, [TenantCreated(name="A")], expected_version=0, context=context
    )

    message = await nc.jetstream().get_msg("NX_EVENTS", result.last_sequence)

    assert (
        message.subject == f"nx.ev.{aggregate.tenant_id}.tenant.{aggregate.tenant_id}"
    )
    headers = message.headers or {}
    assert headers["Nx-Event-Type"] == "tenant.created"
    assert headers["Nx-Schema-Version"] == "1"
    assert headers["Nx-Tenant"] == aggregate.tenant_id
    assert headers["Nx-Actor"] == "u"
    assert headers["Nx-Command-Id"] == context.command_id
    assert headers["Nats-Msg-Id"] == context.command_id
    assert headers["Nx-Correlation-Id"] == "c"
    assert headers["Nx-Causation-Id"] == "k"
    assert headers["traceparent"] == context.traceparent
    assert "Nx-Event-Id" in headers


async def test_current_trace_context_rides_on_the_events(
    store: JetStreamEventStore,
) -> None:
    """One trace follows a command: the span around an append is on its events."""
    configure_tracing("nextra-tests")
    aggregate = tenant()

    with get_tracer("tests").start_as_current_span("command") as span:
        await store.append(
            aggregate,
            [TenantCreated(name="A")],
            expected_version=0,
            context=CommandContext(),
        )
    [recorded] = await store.load(aggregate)

    trace_id = format(span.get_span_context().trace_id, "032x")
    assert recorded.traceparent is not None
    assert recorded.traceparent.split("-")[1] == trace_id


async def test_atomic_append_across_aggregates_commits_both(
    store: JetStreamEventStore,
) -> None:
    first, second = tenant(), tenant()
    context = CommandContext()

    results = await store.append_atomic(
        [
            Write(first, [TenantCreated(name="A")], 0),
            Write(second, [TenantCreated(name="B"), TenantRenamed(name="C")], 0),
        ],
        context=context,
    )

    assert [e.sequence for e in await store.load(first)] == [results[0].last_sequence]
    loaded = await store.load(second)
    assert [e.sequence for e in loaded] == [
        results[1].first_sequence,
        results[1].last_sequence,
    ]
    assert results[1].first_sequence == results[0].last_sequence + 1


async def test_atomic_append_with_one_stale_aggregate_stores_nothing(
    store: JetStreamEventStore,
) -> None:
    first, second = tenant(), tenant()
    await store.append(
        second, [TenantCreated(name="B")], expected_version=0, context=CommandContext()
    )
    before = await store.last_sequence()

    with pytest.raises(ConcurrencyError):
        await store.append_atomic(
            [
                Write(first, [TenantCreated(name="A")], 0),
                Write(second, [TenantRenamed(name="C")], 0),
            ],
            context=CommandContext(),
        )

    assert await store.last_sequence() == before
    assert await store.load(first) == []


async def test_repeated_atomic_append_returns_the_original_results(
    store: JetStreamEventStore,
) -> None:
    first, second = tenant(), tenant()
    context = CommandContext()
    writes = [
        Write(first, [TenantCreated(name="A")], 0),
        Write(second, [TenantCreated(name="B")], 0),
    ]
    original = await store.append_atomic(writes, context=context)

    repeated = await store.append_atomic(writes, context=context)

    assert [r.last_sequence for r in repeated] == [r.last_sequence for r in original]
    assert all(r.duplicate for r in repeated)
    assert len(await store.load(first)) == len(await store.load(second)) == 1


async def test_atomic_append_refuses_the_same_aggregate_twice(
    store: JetStreamEventStore,
) -> None:
    aggregate = tenant()
    with pytest.raises(ValidationError, match="twice"):
        await store.append_atomic(
            [
                Write(aggregate, [TenantCreated(name="A")], 0),
                Write(aggregate, [TenantRenamed(name="B")], None),
            ],
            context=CommandContext(),
        )
