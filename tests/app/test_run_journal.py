"""The run journal's commits against a real JetStream: conflicts and repeats."""

from __future__ import annotations

from nextra.app.runs import RunJournal
from nextra.events.runs import RunCancelled
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import aggregate_subject, run_aggregate
from nextra.kernel.ids import new_id
from tests.readmodels.test_runs_projection import RunWriter


async def test_a_command_stored_before_its_answer_was_lost_counts_as_committed(
    runs_store: JetStreamEventStore,
) -> None:
    writer = RunWriter(runs_store, new_id(), new_id())
    await writer.trigger({"name": "Ann"})
    run = run_aggregate(writer.tenant_id, writer.flow_id, writer.run_id)
    journal = RunJournal(runs_store)
    before = await journal.state(run)
    # What a worker holds when its first append was stored but the answer lost.
    stale = await RunJournal(runs_store).state(run)
    cancel = RunCancelled(reason="stop", steps=0)

    first = await journal.commit(run, before, cancel, command_id="cancel:1")
    again = await RunJournal(runs_store).commit(
        run, stale, cancel, command_id="cancel:1"
    )

    assert first is again is True
    assert stale.status == "cancelled"
    events = [e async for e in runs_store.read(subject=aggregate_subject(run))]
    assert sum(isinstance(e.event, RunCancelled) for e in events) == 1


async def test_a_run_that_moved_on_is_refreshed_for_the_caller_to_decide_again(
    runs_store: JetStreamEventStore,
) -> None:
    writer = RunWriter(runs_store, new_id(), new_id())
    await writer.trigger({"name": "Bo"})
    run = run_aggregate(writer.tenant_id, writer.flow_id, writer.run_id)
    stale = await RunJournal(runs_store).state(run)
    await writer.append(RunCancelled(reason="elsewhere", steps=0))

    committed = await RunJournal(runs_store).commit(
        run, stale, RunCancelled(reason="here", steps=0), command_id="cancel:2"
    )

    assert committed is False
    assert stale.status == "cancelled"
