"""The organism spec's behaviours, run by a real worker on real JetStream."""

from __future__ import annotations

import asyncio

from nextra.app.runs import RunJournal
from nextra.events.runs import RunFailed, StepCompleted, StepRetried
from nextra.eventstore.subjects import run_aggregate
from tests.runtime.conftest import Runtime
from tests.runtime.flowkit import CALLS

K = "tests.runtime.flowkit"


def organism(*listeners: str, extra: str = "") -> str:
    body = "\n".join(listeners)
    return f"organism:\n  name: t\n{extra}listeners:\n{body}\n"


def listener(
    name: str,
    handler: str,
    payload: str = "Msg",
    *,
    more: str = "",
) -> str:
    text = (
        f"  - name: {name}\n"
        f"    description: {name}\n"
        f"    handler: {K}.{handler}\n"
        f"    payload_class: {K}.{payload}\n"
    )
    for line in more.splitlines():
        text += f"    {line}\n"
    return text


def order(run_id: str) -> list[str]:
    return [call.listener for call in CALLS[run_id]]


async def test_t01_linear_forward_chain(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "chain_a"), listener("b", "chain_b"), listener("c", "chain_c")
        )
    )

    state = await runtime.run(flow, {"text": "hi"})

    assert state.status == "completed"
    calls = CALLS[state.run_id]
    assert order(state.run_id) == ["a", "b", "c"]
    assert calls[2].value == "hi>a>b"
    assert calls[2].from_id == "b"
    assert calls[0].from_id == "user:tester"
    assert len({call.thread_id for call in calls}) == 3


async def test_t04_forward_to_unknown_listener_is_recorded(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("a", "to_nowhere")))

    state = await runtime.run(flow, {"text": "x"})

    assert order(state.run_id) == ["a"]
    steps = [
        e.event
        for e in await runtime.events(flow, state.run_id)
        if isinstance(e.event, StepCompleted)
    ]
    [dropped] = steps[0].dropped
    assert dropped.reason == "unroutable"
    assert "nosuch.msg" in dropped.detail
    assert state.status == "completed"


async def test_t08_peer_violation_is_blocked_and_recorded(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "to_c", more="agent: true\npeers: [b]"),
            listener("b", "sink"),
            listener("c", "sink_c"),
        )
    )

    state = await runtime.run(flow, {"text": "x"})

    assert order(state.run_id) == ["a"]
    step = next(
        e.event
        for e in await runtime.events(flow, state.run_id)
        if isinstance(e.event, StepCompleted)
    )
    assert [d.reason for d in step.dropped] == ["peer_violation"]


async def test_agent_that_accepts_system_error_hears_of_its_violation(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "to_c", more="agent: true\npeers: [b]"),
            listener(
                "a",
                "hears_error",
                "SystemError",
                more="agent: true\npeers: [b]",
            ).replace(f"{K}.SystemError", "SystemError"),
            listener("b", "sink"),
            listener("c", "sink_c"),
        )
    )

    state = await runtime.run(flow, {"text": "x"})

    assert order(state.run_id) == ["a", "a!"]
    assert CALLS[state.run_id][1].value == "routing"
    assert CALLS[state.run_id][1].thread_id == CALLS[state.run_id][0].thread_id


async def test_t12_self_loop_ends_when_the_handler_stops(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener(
                "looper", "count_to_five", "Count", more="agent: true\npeers: [looper]"
            )
        )
    )

    state = await runtime.run(flow, {"n": 0}, "Count")

    calls = CALLS[state.run_id]
    assert [call.value for call in calls] == [0, 1, 2, 3, 4, 5]
    assert [call.is_self_call for call in calls] == [False] + [True] * 5
    assert len({call.thread_id for call in calls}) == 6
    assert state.status == "completed"


async def test_t15_endless_loop_stops_at_the_hop_limit(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("spin", "spin", "Count")), tier="free")

    state = await runtime.run(flow, {"n": 0}, "Count")

    events = await runtime.events(flow, state.run_id)
    assert state.status == "failed"
    assert isinstance(events[-1].event, RunFailed)
    assert events[-1].event.reason == "hop_limit"
    # The free tier allows 100 messages per run: 100 invocations, none after.
    assert len(CALLS[state.run_id]) == 100
    await asyncio.sleep(0.3)
    assert len(CALLS[state.run_id]) == 100


async def test_respond_unwinds_a_three_deep_chain_to_the_trigger(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "relay_a"), listener("b", "relay_b"), listener("c", "relay_c")
        )
    )

    state = await runtime.run(flow, {"text": "q"})

    assert order(state.run_id) == ["a", "b", "c", "b", "a"]
    calls = CALLS[state.run_id]
    assert calls[3].thread_id == calls[1].thread_id
    assert calls[4].thread_id == calls[0].thread_id
    assert state.status == "completed"
    assert state.verdict is not None
    assert state.verdict.output is not None
    assert state.verdict.output.payload == {"text": "q>a>b<c<b<a"}


async def test_self_iteration_then_respond_unwinds_every_frame(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(
        organism(
            listener("caller", "caller", "Count"), listener("looper", "looper", "Count")
        )
    )

    state = await runtime.run(flow, {"n": 7}, "Count")

    calls = CALLS[state.run_id]
    assert [(call.listener, call.value) for call in calls] == [
        ("caller", 7),
        ("looper", 0),
        ("looper", 1),
        ("looper", 2),
        ("looper", 3),
        ("looper", 300),
        ("looper", 30000),
        ("looper", 3000000),
        ("caller", 300000000),
    ]
    assert [call.is_self_call for call in calls[1:8]] == [False] + [True] * 6
    assert state.verdict is not None
    assert state.verdict.output is not None
    assert state.verdict.output.payload == {"n": 300000000}


async def test_late_reply_is_dropped_and_recorded(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener("root", "root"),
            listener("a", "fan_out_and_answer"),
            listener("b", "quick"),
            listener("c", "slow"),
        )
    )

    state = await runtime.run(flow, {"text": "go"})

    # a answered root once b replied; c's reply came after and is not delivered.
    assert order(state.run_id).count("a") == 2
    assert order(state.run_id).count("root") == 2
    drops = [
        dropped
        for e in await runtime.events(flow, state.run_id)
        if isinstance(e.event, StepCompleted)
        for dropped in e.event.dropped
    ]
    assert [d.reason for d in drops] == ["late_reply"]
    assert drops[0].sender == "c"
    assert state.status == "completed"


async def test_fan_out_delivers_every_reply(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("a", "fan_out"), listener("b", "sink")))

    state = await runtime.run(flow, {"text": "5"})

    received = sorted(
        call.value for call in CALLS[state.run_id] if call.listener == "sink"
    )
    assert received == ["0", "1", "2", "3", "4"]
    assert state.status == "completed"


async def test_fan_out_beyond_the_tier_fails_the_run(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(listener("a", "fan_out"), listener("b", "sink")), tier="free"
    )

    state = await runtime.run(flow, {"text": "11"})

    events = await runtime.events(flow, state.run_id)
    assert isinstance(events[-1].event, RunFailed)
    assert events[-1].event.reason == "fan_out_limit"
    assert order(state.run_id) == ["a"]


async def test_concurrent_runs_have_disjoint_threads(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "chain_a"), listener("b", "chain_b"), listener("c", "chain_c")
        )
    )

    first, second = await asyncio.gather(
        runtime.run(flow, {"text": "one"}), runtime.run(flow, {"text": "two"})
    )

    threads_one = {call.thread_id for call in CALLS[first.run_id]}
    threads_two = {call.thread_id for call in CALLS[second.run_id]}
    assert len(threads_one) == len(threads_two) == 3
    assert not threads_one & threads_two
    assert CALLS[first.run_id][2].value == "one>a>b"
    assert CALLS[second.run_id][2].value == "two>a>b"


async def test_thread_memory_holds_the_messages_of_the_thread(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("a", "ask_b"), listener("b", "answer")))

    state = await runtime.run(flow, {"text": "start"})

    assert state.verdict is not None
    assert state.verdict.output is not None
    # a's thread saw the trigger's message and b's answer, nothing of b's own.
    assert state.verdict.output.payload == {"text": "user:tester:start | b:answer"}


async def test_duplicate_names_take_the_message_in_order(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "to_dup"),
            listener("dup", "first_of_two"),
            listener("dup", "second_of_two"),
        )
    )

    state = await runtime.run(flow, {"text": "x"})

    assert order(state.run_id) == ["a", "dup#1", "dup#2"]
    assert state.status == "completed"
    # Each listener's step has its own id, though the two share a message.
    calls = CALLS[state.run_id]
    assert [call.step_id.rsplit(":", 1)[1] for call in calls] == ["0", "1", "2"]
    assert calls[1].step_id.rsplit(":", 1)[0] == calls[2].step_id.rsplit(":", 1)[0]
    assert len({call.step_id for call in calls}) == 3
    assert {call.attempt for call in calls} == {1}


async def test_strings_arrive_verbatim(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("echo", "echo_verbatim")))

    for text in ("007", "true", "1.50", "NaN", " spaced "):
        state = await runtime.run(flow, {"text": text})
        assert CALLS[state.run_id][0].value == text
        assert state.verdict is not None
        assert state.verdict.output is not None
        assert state.verdict.output.payload == {"text": text}


async def test_handler_error_fails_the_run_with_its_reason_and_logs(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("broken", "broken")))

    state = await runtime.run(flow, {"text": "x"})

    events = await runtime.events(flow, state.run_id)
    step = events[1].event
    assert isinstance(step, StepCompleted)
    assert step.outcome == "error"
    assert step.error is not None
    assert "the handler broke" in step.error.message
    assert [line.message for line in step.logs] == ["about to fail on x"]
    failed = events[-1].event
    assert isinstance(failed, RunFailed)
    assert failed.reason == "handler_error"
    assert failed.listener == "broken"


async def test_invalid_return_is_recorded(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("wrong", "wrong_return")))

    state = await runtime.run(flow, {"text": "x"})

    events = await runtime.events(flow, state.run_id)
    step = events[1].event
    assert isinstance(step, StepCompleted)
    assert step.outcome == "invalid_return"
    assert state.status == "failed"


async def test_handler_timeout_ends_the_run(runtime: Runtime) -> None:
    flow = await runtime.flow(
        organism(listener("sleepy", "sleepy", more="timeout_seconds: 0.2"))
    )

    state = await runtime.run(flow, {"text": "5"})

    events = await runtime.events(flow, state.run_id)
    failed = events[-1].event
    assert isinstance(failed, RunFailed)
    assert failed.reason == "handler_timeout"
    assert failed.listener == "sleepy"


async def test_cancel_stops_a_run(runtime: Runtime) -> None:
    flow = await runtime.flow(organism(listener("sleepy", "sleepy")))
    triggered = await runtime.trigger(flow, {"text": "0.5"})
    while not CALLS[triggered.run_id]:
        await asyncio.sleep(0.01)

    await runtime.runs.cancel(flow.tenant_id, triggered.run_id, actor="user:tester")

    state = await runtime.ended(flow, triggered.run_id)
    assert state.status == "cancelled"
    await asyncio.sleep(0.8)
    events = await runtime.events(flow, triggered.run_id)
    # The handler's late outcome was not recorded on the ended run.
    assert [type(e.event).__name__ for e in events] == ["RunTriggered", "RunCancelled"]


async def test_a_step_owed_to_a_run_cancelled_meanwhile_does_not_run(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(
        organism(
            listener("a", "sleep_or_forward"),
            listener("sink", "sink"),
            extra="max_concurrent_handlers: 1\n",
        )
    )
    # One event of the flow at a time: while the second run sleeps, the first
    # run's next step waits, already stored, and this worker has that run
    # cached as it left it.
    cancelled = await runtime.trigger(flow, {"text": "go"})
    sleeper = await runtime.trigger(flow, {"text": "sleep 1"})
    while not CALLS[sleeper.run_id]:
        await asyncio.sleep(0.01)

    await runtime.runs.cancel(flow.tenant_id, cancelled.run_id, actor="user:tester")

    await runtime.ended(flow, sleeper.run_id)
    state = await runtime.ended(flow, cancelled.run_id)
    await asyncio.sleep(0.5)
    assert state.status == "cancelled"
    assert order(cancelled.run_id) == ["a"]


async def test_a_worker_reads_a_cancel_stored_elsewhere_before_the_next_step(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("sleepy", "sleepy")))
    # Long enough that the run is still going when it is cancelled.
    triggered = await runtime.trigger(flow, {"text": "2"})
    run = run_aggregate(flow.tenant_id, flow.flow_id, triggered.run_id)
    worker_journal = RunJournal(runtime.runs_store)
    seen = await worker_journal.state(run)

    await runtime.runs.cancel(flow.tenant_id, triggered.run_id, actor="user:tester")

    cached = await worker_journal.state(run, at_least=seen.version)
    assert cached.status == "running"
    latest = await worker_journal.state(run, at_least=seen.version, latest=True)
    assert latest.status == "cancelled"


async def test_no_handler_runs_once_a_step_has_decided_the_run(
    runtime: Runtime,
) -> None:
    # Two listeners take "d"; the first times out, which fails the run.
    flow = await runtime.flow(
        organism(
            listener("d", "sleepy", more="timeout_seconds: 0.2"),
            listener("d", "second_of_two"),
        )
    )

    state = await runtime.run(flow, {"text": "5"})

    assert state.status == "failed"
    assert [call.listener for call in CALLS[state.run_id]] == ["sleepy"]


def deciding_fan_out(limit: int) -> str:
    """a fans out to x, which times out (deciding the run), and y, which is slow."""
    return organism(
        listener("a", "fan_to_x_and_y"),
        listener("x", "sleepy", more="timeout_seconds: 0.2"),
        listener("y", "late_forward"),
        listener("sink", "sink"),
        extra=f"max_concurrent_handlers: {limit}\n",
    )


async def test_a_step_waiting_for_its_place_when_the_run_is_decided_never_starts(
    runtime: Runtime,
) -> None:
    # One handler at a time: y waits for x's place, which x keeps until its
    # timeout is committed and has failed the run.
    flow = await runtime.flow(deciding_fan_out(1))

    state = await runtime.run(flow, {"text": "go"})

    assert state.status == "failed"
    assert [call.listener for call in CALLS[state.run_id]] == ["a", "sleepy"]


async def test_a_sibling_running_when_the_run_is_decided_sends_nothing(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(deciding_fan_out(2))

    state = await runtime.run(flow, {"text": "go"})
    # y was running beside x when x's timeout decided the run; let it finish.
    await asyncio.sleep(1.0)

    assert state.status == "failed"
    events = await runtime.events(flow, state.run_id)
    failed = events[-1].event
    assert isinstance(failed, RunFailed) and failed.reason == "handler_timeout"
    steps = [e.event.listener for e in events if isinstance(e.event, StepCompleted)]
    assert steps == ["a", "x"]
    assert sorted(call.listener for call in CALLS[state.run_id]) == [
        "a",
        "sleepy",
        "y",
    ]


async def test_a_nul_character_in_a_reply_is_an_invalid_return_run_once(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("nul", "nul_reply")))

    state = await runtime.run(flow, {"text": "x"})

    assert state.status == "failed"
    assert [call.listener for call in CALLS[state.run_id]] == ["nul"]
    events = await runtime.events(flow, state.run_id)
    step = next(e.event for e in events if isinstance(e.event, StepCompleted))
    assert step.outcome == "invalid_return"
    assert step.error is not None and "NUL character" in step.error.message
    assert not any(isinstance(e.event, StepRetried) for e in events)


async def test_a_nul_character_in_a_log_line_is_kept_as_a_replacement(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("nul_log", "nul_log")))

    state = await runtime.run(flow, {"text": "x"})

    assert state.status == "completed"
    events = await runtime.events(flow, state.run_id)
    step = next(e.event for e in events if isinstance(e.event, StepCompleted))
    assert [line.message for line in step.logs] == ["odd bytes: a\ufffdb"]


async def test_a_handler_that_cancels_itself_fails_its_step_once(
    runtime: Runtime,
) -> None:
    flow = await runtime.flow(organism(listener("cancels", "cancels_itself")))

    state = await runtime.run(flow, {"text": "x"})

    assert state.status == "failed"
    assert [call.listener for call in CALLS[state.run_id]] == ["cancels"]
    events = await runtime.events(flow, state.run_id)
    failed = events[-1].event
    assert isinstance(failed, RunFailed) and failed.reason == "handler_error"
    assert "CancelledError" in failed.message
