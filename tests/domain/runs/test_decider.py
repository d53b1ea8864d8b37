"""The run aggregate's decisions, without a store: start, steps, ends, deadlines."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from nextra.domain.flows import HOSTED, load_organism
from nextra.domain.runs import decider
from nextra.domain.runs.routing import Reply
from nextra.domain.runs.state import RunState
from nextra.domain.runs.threads import thread_id
from nextra.domain.tiers import limits_for
from nextra.events.runs import LogLine, RunCompleted, RunFailed, RunTriggered, Trigger
from nextra.kernel.errors import ConflictError, ValidationError

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)

FLOW = load_organism(
    """\
organism:
  name: t
payloads:
  Msg:
    text: str
listeners:
  - name: a
    description: a
    handler: builtin:echo
    payload_class: Msg
  - name: b
    description: b
    handler: builtin:echo
    payload_class: Msg
""",
    policy=HOSTED,
)

TEXTS = load_organism(
    """\
organism:
  name: texts
listeners:
  - name: echo
    description: echo
    handler: builtin:echo
    payload_class: TextInput
  - name: echo
    description: echo numbers
    handler: builtin:echo
    payload_class: Msg
payloads:
  Msg:
    text: str
""",
    policy=HOSTED,
)


def trigger_of(
    payload_type: str, payload: dict[str, object], source: str = "user:u"
) -> RunTriggered:
    return decider.start(
        run_id="r1",
        flow_id="f1",
        revision=1,
        organism=FLOW if payload_type == "Msg" else TEXTS,
        tier="free",
        limits=decider.limits_of(limits_for("free")),
        trigger=Trigger(kind="manual", source=source),
        payload_type=payload_type,
        payload=payload,
        now=NOW,
    )


def started() -> RunState:
    state = RunState()
    state.apply(trigger_of("Msg", {"text": "hi"}), 1)
    return state


def result(*replies: Reply, outcome: str = "ok") -> decider.StepResult:
    return decider.StepResult(
        outcome=outcome,  # type: ignore[arg-type]
        replies=replies,
        started_at=NOW,
        duration_ms=1.0,
    )


def forward(to: str, text: str = "x") -> Reply:
    return Reply(kind="forward", to=to, payload_type="Msg", payload={"text": text})


def respond(text: str = "x") -> Reply:
    return Reply(kind="respond", to=None, payload_type="Msg", payload={"text": text})


def test_the_first_message_comes_from_the_trigger_to_the_entry() -> None:
    state = started()

    first = state.messages["1"]
    assert first.sender == "user:u"
    assert first.chain == ("user:u", "a")
    assert first.thread_id == thread_id("r1", ("user:u", "a"))
    assert state.deadline == NOW + timedelta(seconds=300)


def test_a_payload_that_does_not_fit_the_entry_is_refused_by_field() -> None:
    with pytest.raises(ValidationError) as caught:
        decider.start(
            run_id="r1",
            flow_id="f1",
            revision=1,
            organism=FLOW,
            tier="free",
            limits=decider.limits_of(limits_for("free")),
            trigger=Trigger(kind="manual", source="user:u"),
            payload_type="Msg",
            payload={"txt": "hi"},
            now=NOW,
        )
    assert caught.value.where is not None
    assert caught.value.where.startswith("payload")


def test_a_respond_to_the_trigger_completes_the_run_with_its_output() -> None:
    state = started()
    step = decider.complete_step(
        state, FLOW, state.messages["1"], 0, result(respond("out"))
    )
    assert step is not None
    state.apply(step, 2)

    ending = decider.settle(state)

    assert isinstance(ending, RunCompleted)
    assert ending.output == {"text": "out"}


def test_a_duplicate_step_records_nothing() -> None:
    state = started()
    step = decider.complete_step(state, FLOW, state.messages["1"], 0, result())
    assert step is not None
    state.apply(step, 2)

    assert decider.complete_step(state, FLOW, state.messages["1"], 0, result()) is None


def test_forward_numbers_messages_and_extends_the_chain() -> None:
    state = started()

    step = decider.complete_step(
        state, FLOW, state.messages["1"], 0, result(forward("B"))
    )

    assert step is not None
    [sent] = step.sent
    assert sent.id == "2"
    assert sent.chain == ("user:u", "a", "B")
    assert sent.receivers == 1
    state.apply(step, 2)
    assert decider.settle(state) is None


def test_a_run_that_goes_quiet_after_an_error_has_failed() -> None:
    state = started()
    failed = decider.StepResult(
        outcome="error",
        error=decider.StepError(code="handler_error", message="boom"),
        started_at=NOW,
        duration_ms=1.0,
    )
    step = decider.complete_step(state, FLOW, state.messages["1"], 0, failed)
    assert step is not None
    state.apply(step, 2)

    ending = decider.settle(state)

    assert isinstance(ending, RunFailed)
    assert ending.reason == "handler_error"
    assert "boom" in ending.message


def test_an_invalid_payload_is_dropped_with_the_field() -> None:
    state = started()
    bad = Reply(kind="forward", to="b", payload_type="Msg", payload={"text": 5})

    step = decider.complete_step(state, FLOW, state.messages["1"], 0, result(bad))

    assert step is not None
    [dropped] = step.dropped
    assert dropped.reason == "invalid_payload"
    assert "text" in dropped.detail


def test_expire_fails_a_run_only_after_its_deadline() -> None:
    state = started()

    assert decider.expire(state, NOW + timedelta(seconds=299)) is None
    expired = decider.expire(state, NOW + timedelta(seconds=301))
    assert expired is not None
    assert expired.reason == "deadline"


def test_an_ended_run_cannot_be_cancelled() -> None:
    state = started()
    state.apply(RunCompleted(steps=0), 2)

    with pytest.raises(ConflictError):
        decider.cancel(state, "too late")


def test_thread_ids_are_per_run_and_keep_dotted_names_apart() -> None:
    assert thread_id("r1", ("a", "b")) == thread_id("r1", ("a", "b"))
    assert thread_id("r1", ("a", "b")) != thread_id("r2", ("a", "b"))
    assert thread_id("r1", ("a.b",)) != thread_id("r1", ("a", "b"))


def test_a_trigger_payload_over_the_tier_is_refused() -> None:
    limit = limits_for("free").max_payload_bytes
    with pytest.raises(decider.PayloadTooLarge) as caught:
        decider.start(
            run_id="r1",
            flow_id="f1",
            revision=1,
            organism=FLOW,
            tier="free",
            limits=decider.limits_of(limits_for("free")),
            trigger=Trigger(kind="manual", source="user:u"),
            payload_type="Msg",
            payload={"text": "x" * limit},
            now=NOW,
        )
    assert caught.value.where == "payload"


def test_a_reply_over_the_payload_limit_ends_the_run() -> None:
    state = started()
    limit = limits_for("free").max_payload_bytes

    step = decider.complete_step(
        state, FLOW, state.messages["1"], 0, result(forward("b", "x" * limit))
    )

    assert step is not None
    assert step.limit == "payload_limit"
    assert step.sent == ()
    state.apply(step, 2)
    ending = decider.settle(state)
    assert isinstance(ending, RunFailed)
    assert ending.reason == "payload_limit"


def test_a_step_too_big_for_one_event_fails_the_run_instead_of_its_commit() -> None:
    # Ten forwards within the free tier's limit, and logs of multi-byte text:
    # each part is allowed, together they are over what one event holds.
    state = started()
    text = "x" * (limits_for("free").max_payload_bytes - 100)
    logs = tuple(LogLine(at=NOW, level="info", message="é" * 2000) for _ in range(200))
    big = decider.StepResult(
        outcome="ok",
        replies=tuple(forward("b", text) for _ in range(10)),
        logs=logs,
        started_at=NOW,
        duration_ms=1.0,
    )

    step = decider.complete_step(state, FLOW, state.messages["1"], 0, big)

    assert step is not None
    assert (step.outcome, step.limit, step.sent) == ("refused", "payload_limit", ())
    assert step.error is not None and "one run event holds" in step.error.message
    assert 0 < len(step.logs) <= 20
    state.apply(step, 2)
    ending = decider.settle(state)
    assert isinstance(ending, RunFailed)
    assert ending.reason == "payload_limit"


def test_a_trigger_too_big_for_one_event_is_refused_whatever_the_tier() -> None:
    with pytest.raises(decider.PayloadTooLarge) as caught:
        decider.start(
            run_id="r1",
            flow_id="f1",
            revision=1,
            organism=FLOW,
            tier="enterprise",
            limits=decider.limits_of(limits_for("enterprise")),
            trigger=Trigger(kind="manual", source="user:u"),
            payload_type="Msg",
            payload={"text": "é" * 510_000},
            now=NOW,
        )

    assert caught.value.where == "payload"
    assert isinstance(caught.value, ValidationError)


def test_a_retried_trigger_matches_what_it_started_and_nothing_else() -> None:
    typed = trigger_of("Msg", {"text": "hi"}, "api-key:one")
    text = trigger_of(
        "TextInput",
        {"text": "hi", "source": "api-key:one", "user": "api-key:one"},
        "api-key:one",
    )

    assert decider.same_trigger(typed, FLOW, None, {"text": "hi"})
    assert decider.same_trigger(typed, FLOW, "msg", {"text": "hi"})
    assert not decider.same_trigger(typed, FLOW, "Msg", {"text": "ho"})
    assert not decider.same_trigger(typed, FLOW, "Other", {"text": "hi"})
    assert not decider.same_trigger(typed, FLOW, None, {"text": 1})
    assert not decider.same_trigger(typed, FLOW, None, "hi")
    # Text is the text, whoever sends it again.
    assert decider.same_trigger(text, TEXTS, None, "hi")
    assert not decider.same_trigger(text, TEXTS, None, "hello")


def test_an_entry_listener_of_several_types_needs_the_type_named() -> None:
    assert decider.entry_type(FLOW, "f1") == "Msg"
    with pytest.raises(ValidationError) as raised:
        decider.entry_type(TEXTS, "f2")
    assert raised.value.where == "payload_type"
