"""Manual triggers and cancel over HTTP, with a worker running the steps."""

from __future__ import annotations

import asyncio
from typing import Any

from nextra.app.runs import new_run_id
from nextra.events.catalogue import REGISTRY
from nextra.events.runs import RunCancelled
from nextra.eventstore.headers import EVENT_TYPE, SCHEMA_VERSION
from nextra.eventstore.subjects import flow_runs_filter, runs_subject
from tests.api.conftest import Caller, Running

K = "tests.runtime.flowkit"

FLOW = f"""\
organism:
  name: greeter
listeners:
  - name: echo
    description: Echoes text
    handler: {K}.echo_verbatim
    payload_class: {K}.Msg
"""

TEXT_FLOW = """\
organism:
  name: texts
listeners:
  - name: echo
    description: Echoes text
    handler: builtin:echo
    payload_class: TextInput
"""

SLEEPY = f"""\
organism:
  name: sleepy
listeners:
  - name: sleepy
    description: Sleeps
    handler: {K}.sleepy
    payload_class: {K}.Msg
"""


async def started_flow(running: Running, caller: Caller, yaml: str) -> str:
    created = await running.http.post(
        "/api/flows",
        json={"name": "F", "organism_yaml": yaml},
        headers=caller.headers,
    )
    assert created.status_code == 201, created.text
    flow_id: str = created.json()["id"]
    started = await running.http.post(
        f"/api/flows/{flow_id}/start", headers=caller.headers
    )
    assert started.status_code == 200, started.text
    return flow_id


async def trigger(
    running: Running, caller: Caller, flow_id: str, body: dict[str, Any], **params: Any
) -> Any:
    return await running.http.post(
        f"/api/flows/{flow_id}/runs",
        json=body,
        params=params,
        headers=caller.headers,
    )


async def test_a_waited_run_answers_with_its_output(running: Running) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, FLOW)

    response = await trigger(
        running, caller, flow_id, {"payload": {"text": "007"}}, wait=10
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "completed"
    assert body["output_type"] == "Msg"
    assert body["output"] == {"text": "007"}
    assert response.headers["location"] == f"/api/runs/{body['run_id']}"


async def test_text_becomes_a_text_input_from_the_caller(running: Running) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, TEXT_FLOW)

    response = await running.http.post(
        f"/api/triggers/{flow_id}/inject",
        json={"text": "hello"},
        params={"wait": 10},
        headers=caller.headers,
    )

    assert response.status_code == 200, response.text
    output = response.json()["output"]
    assert output["text"] == "hello"
    assert output["source"].startswith("api-key:")


async def test_without_wait_the_trigger_is_acknowledged_once_stored(
    running: Running,
) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, FLOW)

    response = await trigger(running, caller, flow_id, {"payload": {"text": "x"}})

    assert response.status_code == 202, response.text
    assert response.json()["status"] == "running"


async def test_a_stopped_flow_refuses_triggers(running: Running) -> None:
    caller = await running.tenant()
    created = await running.http.post(
        "/api/flows",
        json={"name": "F", "organism_yaml": FLOW},
        headers=caller.headers,
    )
    flow_id = created.json()["id"]

    response = await trigger(running, caller, flow_id, {"payload": {"text": "x"}})

    assert response.status_code == 409
    problem = response.json()
    assert "stopped" in problem["detail"]
    assert problem["got"] == "stopped"


async def test_a_payload_that_does_not_fit_names_the_field(running: Running) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, TEXT_FLOW)

    response = await trigger(
        running, caller, flow_id, {"payload": {"txt": "x"}, "payload_type": "TextInput"}
    )

    assert response.status_code == 422, response.text
    assert response.json()["where"].startswith("payload")


async def test_the_same_idempotency_key_starts_one_run(running: Running) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, FLOW)
    headers = {**caller.headers, "Idempotency-Key": "once"}

    async def start() -> Any:
        return await running.http.post(
            f"/api/flows/{flow_id}/runs",
            json={"payload": {"text": "x"}},
            headers=headers,
        )

    first = await start()
    # The flow changes so that its entry listener takes another type, then
    # stops: neither matters to a retry of what was already started.
    read = await running.http.get(f"/api/flows/{flow_id}", headers=caller.headers)
    revised = await running.http.put(
        f"/api/flows/{flow_id}",
        json={"name": "F2", "organism_yaml": TEXT_FLOW},
        headers={**caller.headers, "If-Match": read.headers["etag"]},
    )
    assert revised.json()["revision"] == 2, revised.text
    second = await start()
    await running.http.post(f"/api/flows/{flow_id}/stop", headers=caller.headers)
    third = await start()

    assert first.status_code == second.status_code == third.status_code == 202
    runs = {answer.json()["run_id"] for answer in (first, second, third)}
    assert runs == {first.json()["run_id"]}
    # The answer describes the run that was started, on the revision it had.
    assert {answer.json()["revision"] for answer in (first, second, third)} == {1}


async def test_an_idempotency_key_sent_again_with_another_payload_is_refused(
    running: Running,
) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, FLOW)
    headers = {**caller.headers, "Idempotency-Key": "order-7"}

    first, second = [
        await running.http.post(
            f"/api/flows/{flow_id}/runs", json={"payload": body}, headers=headers
        )
        for body in ({"text": "one"}, {"text": "two"})
    ]

    assert first.status_code == 202, first.text
    assert second.status_code == 422, second.text
    problem = second.json()
    assert problem["where"] == "Idempotency-Key"
    assert first.json()["run_id"] in problem["detail"]
    assert "'order-7'" in problem["detail"]


async def test_an_idempotency_key_reused_on_another_flow_starts_another_run(
    running: Running,
) -> None:
    caller = await running.tenant()
    first_flow = await started_flow(running, caller, FLOW)
    second_flow = await started_flow(running, caller, FLOW)
    headers = {**caller.headers, "Idempotency-Key": "shared"}

    first, second = [
        await running.http.post(
            f"/api/flows/{flow_id}/runs?wait=10",
            json={"payload": {"text": "x"}},
            headers=headers,
        )
        for flow_id in (first_flow, second_flow)
    ]

    assert (first.status_code, second.status_code) == (200, 200), second.text
    assert first.json()["run_id"] != second.json()["run_id"]
    assert second.json()["flow_id"] == second_flow


async def test_a_payload_over_the_tiers_size_is_refused_with_a_problem(
    running: Running,
) -> None:
    caller = await running.tenant(tier="free")
    flow_id = await started_flow(running, caller, FLOW)

    response = await trigger(
        running, caller, flow_id, {"payload": {"text": "x" * 70_000}}
    )

    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["where"] == "payload"


async def test_cancel_stops_a_running_run(running: Running) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, SLEEPY)
    started = await trigger(running, caller, flow_id, {"payload": {"text": "3"}})
    run_id = started.json()["run_id"]
    await asyncio.sleep(0.3)

    cancelled = await running.http.post(
        f"/api/runs/{run_id}/cancel", headers=caller.headers
    )
    again = await running.http.post(
        f"/api/runs/{run_id}/cancel", headers=caller.headers
    )

    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json() == {"run_id": run_id, "status": "cancelled"}
    assert again.status_code == 409


async def test_another_tenant_can_neither_trigger_nor_cancel(running: Running) -> None:
    owner, stranger = await running.tenant(), await running.tenant()
    flow_id = await started_flow(running, owner, SLEEPY)
    started = await trigger(running, owner, flow_id, {"payload": {"text": "1"}})
    run_id = started.json()["run_id"]

    triggered = await trigger(running, stranger, flow_id, {"payload": {"text": "1"}})
    injected = await running.http.post(
        f"/api/triggers/{flow_id}/inject",
        json={"payload": {"text": "1"}},
        headers=stranger.headers,
    )
    cancelled = await running.http.post(
        f"/api/runs/{run_id}/cancel", headers=stranger.headers
    )

    assert [triggered.status_code, injected.status_code, cancelled.status_code] == [
        404,
        404,
        404,
    ]


async def test_a_waited_retry_of_an_ended_run_answers_at_once(
    running: Running,
) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, FLOW)
    headers = {**caller.headers, "Idempotency-Key": "ended"}

    async def start(wait: float) -> Any:
        return await running.http.post(
            f"/api/flows/{flow_id}/runs",
            json={"payload": {"text": "x"}},
            params={"wait": wait},
            headers=headers,
            # Far below the wait asked for: the run has ended, nothing to wait on.
            timeout=10,
        )

    first = await start(10)
    again = await start(60)

    assert first.json()["status"] == again.json()["status"] == "completed"
    assert again.status_code == 200
    assert again.json()["run_id"] == first.json()["run_id"]


async def test_an_end_the_stream_refused_is_not_taken_for_the_runs_end(
    running: Running,
) -> None:
    caller = await running.tenant()
    flow_id = await started_flow(running, caller, SLEEPY)
    key = "raced"
    run_id = new_run_id(caller.tenant_id, flow_id, key)
    subject = runs_subject(caller.tenant_id, flow_id, run_id)
    store = running.platform.runs_store

    waited = asyncio.create_task(
        running.http.post(
            f"/api/flows/{flow_id}/runs",
            json={"payload": {"text": "1"}},
            params={"wait": 20},
            headers={**caller.headers, "Idempotency-Key": key},
            timeout=30,
        )
    )
    async with asyncio.timeout(10):
        while await store.last_sequence(subject) == 0:
            await asyncio.sleep(0.01)
    # A cancel that lost the race to the run's own events: the stream refuses
    # it, yet every core subscriber of the subject hears it.
    await running.platform.nc.publish(
        subject,
        REGISTRY.encode(RunCancelled(reason="too late", steps=0)),
        headers={
            EVENT_TYPE: "run.cancelled",
            SCHEMA_VERSION: "1",
            "Nats-Expected-Last-Subject-Sequence": "0",
        },
    )
    answer = await waited

    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "completed"
    events = [e.event async for e in store.read(subject=subject)]
    assert not any(isinstance(event, RunCancelled) for event in events)


async def test_a_flow_beyond_the_streams_consumer_limit_is_refused_saying_so(
    running: Running,
) -> None:
    first, second = await running.tenant(), await running.tenant()
    first_flow = await started_flow(running, first, TEXT_FLOW)
    second_flow = await started_flow(running, second, TEXT_FLOW)
    # Room for one more work consumer on NX_RUNS, beside the projector's.
    js = running.platform.nc.jetstream()
    info = await js.stream_info("NX_RUNS")
    info.config.max_consumers = (info.state.consumer_count or 0) + 1
    await js.update_stream(info.config)

    taken = await trigger(running, first, first_flow, {"text": "hi"})
    refused = await trigger(running, second, second_flow, {"text": "hi"})

    assert taken.status_code == 202, taken.text
    assert refused.status_code == 503, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.json()["where"] == "NX_RUNS.max_consumers"
    # Refused before anything was stored: a retry later starts the run.
    store = running.platform.runs_store
    assert (
        await store.last_sequence(flow_runs_filter(second.tenant_id, second_flow)) == 0
    )
