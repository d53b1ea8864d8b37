"""Run history over HTTP and live run feeds over WebSockets, on a running platform."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from nextra.events.runs import LogLine, RunCompleted
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import ALL_RUNS
from nextra.readmodels.checkpoints import wait_projected
from tests.api.conftest import Caller, Running
from tests.api.test_schema_fuzz import Fuzzer, _undeclared
from tests.app.test_flows import YAML
from tests.readmodels.test_runs_projection import (
    AT,
    RunWriter,
    cancelled_run,
    completed_run,
    failed_run,
    message,
    running_run,
    step,
)


async def projected(running: Running) -> None:
    newest = await running.platform.runs_store.last_sequence(ALL_RUNS)
    await wait_projected(running.platform.engine, "runs", newest, timeout=10)


async def new_flow(running: Running, caller: Caller) -> str:
    created = await running.http.post(
        "/api/flows",
        json={"name": "History", "organism_yaml": YAML},
        headers=caller.headers,
    )
    assert created.status_code == 201, created.text
    flow_id: str = created.json()["id"]
    return flow_id


@pytest.fixture
async def history(running: Running) -> dict[str, Any]:
    """An owner's flow with five runs in every state, and a stranger."""
    owner, stranger = await running.tenant(), await running.tenant()
    flow = await new_flow(running, owner)
    store = running.platform.runs_store
    tenant = owner.tenant_id
    seeded = {
        "owner": owner,
        "stranger": stranger,
        "flow": flow,
        "completed": await completed_run(store, tenant, flow),
        "failed": await failed_run(store, tenant, flow),
        "cancelled": await cancelled_run(store, tenant, flow),
        "running": await running_run(store, tenant, flow),
    }
    # The stranger's own run of a flow with the very same id.
    await completed_run(store, stranger.tenant_id, flow)
    await projected(running)
    return seeded


async def test_a_flows_runs_are_listed_newest_first_with_their_outcome(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]

    response = await running.http.get(f"/api/flows/{flow}/runs", headers=owner.headers)

    assert response.status_code == 200, response.text
    body = response.json()
    assert [r["id"] for r in body["items"]] == [
        history[name] for name in ("running", "cancelled", "failed", "completed")
    ]
    assert body["next_cursor"] is None
    running_, cancelled, failed, completed = body["items"]
    assert running_["status"] == "running" and running_["finished_at"] is None
    assert cancelled["error"] == {
        "reason": "cancelled",
        "message": "stopped by user:u1",
        "listener": None,
    }
    assert failed["error"]["reason"] == "handler_error"
    assert failed["error"]["listener"] == "greeter"
    assert completed["status"] == "completed"
    assert completed["trigger"] == {"kind": "manual", "source": "api-key:test"}
    assert (completed["steps"], completed["output_type"]) == (3, "Note")
    assert completed["flow_id"] == flow and completed["revision"] == 3
    assert isinstance(completed["duration_ms"], int)


async def test_runs_filter_by_status_and_time_and_page_by_cursor(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]
    url = f"/api/flows/{flow}/runs"
    everything = (await running.http.get(url, headers=owner.headers)).json()["items"]
    middle = everything[1]["triggered_at"]

    failed = await running.http.get(
        url, params={"status": "failed"}, headers=owner.headers
    )
    since = await running.http.get(url, params={"since": middle}, headers=owner.headers)
    until = await running.http.get(url, params={"until": middle}, headers=owner.headers)
    pages: list[list[str]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor:
            params["cursor"] = cursor
        page = (
            await running.http.get(url, params=params, headers=owner.headers)
        ).json()
        pages.append([r["id"] for r in page["items"]])
        cursor = page["next_cursor"]
        if cursor is None:
            break

    ids = [r["id"] for r in everything]
    assert [r["id"] for r in failed.json()["items"]] == [history["failed"]]
    assert [r["id"] for r in since.json()["items"]] == ids[:2]
    assert [r["id"] for r in until.json()["items"]] == ids[2:]
    assert pages == [ids[:3], ids[3:]]


async def test_a_bad_cursor_or_filter_is_refused_with_a_problem(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]
    url = f"/api/flows/{flow}/runs"

    forged = await running.http.get(
        url, params={"cursor": "bm90LWEtY3Vyc29y"}, headers=owner.headers
    )
    status = await running.http.get(
        url, params={"status": "exploded"}, headers=owner.headers
    )
    far = await running.http.get(
        url, params={"since": "0001-01-01T00:00:00+05:00"}, headers=owner.headers
    )
    # A date with an offset and no time, which Python would read as a time.
    dated = [
        await running.http.get(url, params={"since": since}, headers=owner.headers)
        for since in ("2024-01-01+05", "2024-01-01-05:30", "2024-01-01Z")
    ]

    assert forged.status_code == 422, forged.text
    assert forged.json()["where"] == "cursor"
    assert status.status_code == 400
    assert far.status_code == 422, far.text
    assert [response.status_code for response in dated] == [400, 400, 400]
    for response in (forged, status, far, *dated):
        assert response.headers["content-type"] == "application/problem+json"


async def test_a_run_reads_with_its_step_timeline(
    running: Running, history: dict[str, Any]
) -> None:
    owner = history["owner"]

    response = await running.http.get(
        f"/api/runs/{history['completed']}", headers=owner.headers
    )

    assert response.status_code == 200, response.text
    run = response.json()
    assert (run["id"], run["status"], run["steps"]) == (
        history["completed"],
        "completed",
        3,
    )
    assert run["output"] == {"text": "HELLO ADA"}
    assert run["input"]["from"] == "api-key:test"
    assert run["input"]["payload"] == {"name": "Ada"}
    greeter, second_entry, shouter = run["timeline"]
    assert (greeter["listener"], greeter["from"], greeter["payload"]) == (
        "greeter",
        "api-key:test",
        {"name": "Ada"},
    )
    assert greeter["sent"] == ["2"]
    assert greeter["logs"] == [
        {"at": "2026-12-05T09:30:00Z", "level": "info", "message": "greeting Ada"}
    ]
    assert (greeter["outcome"], greeter["error"], greeter["dropped"]) == (
        "ok",
        None,
        [],
    )
    assert greeter["duration_ms"] == 12.5
    assert greeter["started_at"] == "2026-12-05T09:30:00Z"
    assert (second_entry["entry"], second_entry["duration_ms"]) == (1, 3.0)
    assert (shouter["listener"], shouter["from"], shouter["payload"]) == (
        "shouter",
        "greeter",
        {"text": "hello Ada"},
    )


async def test_a_run_reads_as_its_events_say_as_soon_as_they_are_stored(
    running: Running,
) -> None:
    # No wait for the projector here: the history waits for the run's own
    # events, so a client that was just told a run ended never reads it as
    # running, nor a run it just started as missing.
    owner = await running.tenant()
    flow = await new_flow(running, owner)
    store = running.platform.runs_store

    started = await running_run(store, owner.tenant_id, flow)
    shown_started = await running.http.get(
        f"/api/runs/{started}", headers=owner.headers
    )
    ended = await completed_run(store, owner.tenant_id, flow)
    shown_ended = await running.http.get(f"/api/runs/{ended}", headers=owner.headers)
    ended_too = await completed_run(store, owner.tenant_id, flow)
    listed = await running.http.get(f"/api/flows/{flow}/runs", headers=owner.headers)

    assert shown_started.status_code == 200, shown_started.text
    assert shown_ended.json()["status"] == "completed"
    newest = listed.json()["items"][0]
    assert (newest["id"], newest["status"]) == (ended_too, "completed")


async def test_a_failed_steps_error_and_dropped_messages_are_in_the_timeline(
    running: Running, history: dict[str, Any]
) -> None:
    owner = history["owner"]

    run = (
        await running.http.get(f"/api/runs/{history['failed']}", headers=owner.headers)
    ).json()

    [broken] = run["timeline"]
    assert broken["outcome"] == "error"
    assert broken["error"] == {"code": "handler_error", "message": "KeyError: 'name'"}
    assert broken["attempt"] == 2
    assert broken["dropped"] == [
        {
            "reason": "unroutable",
            "detail": "no listener named 'nobody' takes Note",
            "to": "nobody",
            "payload_type": "Note",
            "payload": {"text": "?"},
        }
    ]


async def test_another_tenants_runs_are_not_found(
    running: Running, history: dict[str, Any]
) -> None:
    stranger, flow = history["stranger"], history["flow"]
    missing = await running.http.get(
        "/api/runs/nosuchrun", headers=history["owner"].headers
    )

    listed = await running.http.get(f"/api/flows/{flow}/runs", headers=stranger.headers)
    filtered = await running.http.get(
        f"/api/flows/{flow}/runs",
        params={"status": "running", "since": "2020-01-01T00:00:00Z"},
        headers=stranger.headers,
    )
    run = await running.http.get(
        f"/api/runs/{history['completed']}", headers=stranger.headers
    )

    assert (listed.status_code, filtered.status_code, run.status_code) == (
        404,
        404,
        404,
    )
    # The same answer as for a run that never existed: no oracle.
    assert run.json()["detail"] == missing.json()["detail"].replace(
        "nosuchrun", history["completed"]
    )


async def test_history_answers_match_the_openapi_document(
    running: Running, history: dict[str, Any]
) -> None:
    owner = history["owner"]
    document = (await running.http.get("/schema/openapi.json")).json()
    fuzzer = Fuzzer(document, str(running.http.base_url).rstrip("/"), owner)
    cases = [
        fuzzer.schema["/api/flows/{flow_id}/runs"]["GET"].Case(
            path_parameters={"flow_id": history["flow"]}
        ),
        *(
            fuzzer.schema["/api/runs/{run_id}"]["GET"].Case(
                path_parameters={"run_id": history[name]}
            )
            for name in ("completed", "failed", "cancelled", "running")
        ),
    ]
    try:
        undeclared = [
            await asyncio.to_thread(_undeclared, fuzzer, case, owner) for case in cases
        ]
    finally:
        fuzzer.close()

    assert undeclared == [[]] * len(cases)


# WebSockets.


def ws_url(running: Running, path: str) -> str:
    return str(running.http.base_url).replace("http://", "ws://").rstrip("/") + path


async def frames_until_closed(
    socket: ClientConnection, *, timeout: float = 10
) -> list[dict[str, Any]]:
    frames = []
    async with asyncio.timeout(timeout):
        try:
            while True:
                frames.append(json.loads(await socket.recv()))
        except ConnectionClosed:
            return frames


async def consumers(running: Running) -> list[str]:
    """Every consumer on NX_RUNS: the projector's and the flows' work consumers."""
    js = running.platform.nc.jetstream()
    return sorted(info.name for info in await js.consumers_info("NX_RUNS"))


async def test_a_finished_runs_feed_sends_its_events_then_closes(
    running: Running, history: dict[str, Any]
) -> None:
    owner, run_id = history["owner"], history["completed"]

    async with connect(
        ws_url(running, f"/api/runs/{run_id}/live"),
        additional_headers=owner.headers,
        proxy=None,
    ) as socket:
        frames = await frames_until_closed(socket)
        code = socket.close_code

    assert code == 1000
    assert [f["type"] for f in frames] == [
        "run.triggered",
        "run.step_completed",
        "run.step_completed",
        "run.step_completed",
        "run.completed",
    ]
    sequences = [f["sequence"] for f in frames]
    assert sequences == sorted(sequences)
    assert frames[0]["data"]["run_id"] == run_id
    assert frames[0]["data"]["message"]["payload"] == {"name": "Ada"}
    assert frames[1]["data"]["logs"][0]["message"] == "greeting Ada"
    assert frames[-1]["data"]["output"] == {"text": "HELLO ADA"}
    assert all("recorded_at" in f for f in frames)


async def test_a_running_runs_feed_follows_it_live_until_it_ends(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]
    run = RunWriter(running.platform.runs_store, owner.tenant_id, flow)
    await run.trigger({"name": "Eve"})
    await projected(running)
    # A browser cannot set headers: the token may come in the query.
    token = owner.headers["Authorization"].removeprefix("Bearer ")

    async with connect(
        ws_url(running, f"/api/runs/{run.run_id}/live?access_token={token}"),
        proxy=None,
    ) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), 10))
        await run.append(step("1", "greeter", sent=[message("2", "greeter", "x", {})]))
        await run.append(RunCompleted(steps=1))
        rest = await frames_until_closed(socket)
        code = socket.close_code

    assert first["type"] == "run.triggered"
    assert [f["type"] for f in rest] == ["run.step_completed", "run.completed"]
    assert code == 1000


async def test_a_flows_feed_sends_run_changes_and_log_lines_from_now_on(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]
    store: JetStreamEventStore = running.platform.runs_store

    async with connect(
        ws_url(running, f"/api/flows/{flow}/live"),
        additional_headers=owner.headers,
        proxy=None,
    ) as socket:
        ready = json.loads(await asyncio.wait_for(socket.recv(), 10))
        run = RunWriter(store, owner.tenant_id, flow)
        await run.trigger({"name": "Fay"})
        logs = (
            LogLine(at=AT, level="info", message="one"),
            LogLine(at=AT + timedelta(seconds=1), level="warning", message="two"),
        )
        await run.append(step("1", "greeter", logs=logs))
        await run.append(RunCompleted(steps=1))
        # Another flow's run says nothing here.
        other = RunWriter(store, owner.tenant_id, "another-flow")
        await other.trigger({"name": "Gus"})
        frames = []
        async with asyncio.timeout(10):
            while len(frames) < 4:
                frames.append(json.loads(await socket.recv()))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(socket.recv(), 0.3)

    assert ready["type"] == "feed.ready"
    assert ready["sequence"] < frames[0]["sequence"]
    assert [(f["type"], f["run_id"]) for f in frames] == [
        ("run.triggered", run.run_id),
        ("run.log", run.run_id),
        ("run.log", run.run_id),
        ("run.completed", run.run_id),
    ]
    assert frames[1]["data"] == {
        "message_id": "1",
        "listener": "greeter",
        "entry": 0,
        "at": "2026-12-05T09:30:00Z",
        "level": "info",
        "message": "one",
    }
    assert frames[2]["data"]["message"] == "two"


@pytest.mark.parametrize("feed", ["run", "flow"])
async def test_another_tenants_feed_is_refused_like_a_missing_one(
    running: Running, history: dict[str, Any], feed: str
) -> None:
    stranger = history["stranger"]
    target = history["completed"] if feed == "run" else history["flow"]
    answers = []
    for name in (target, "nosuchthing"):
        async with connect(
            ws_url(running, f"/api/{feed}s/{name}/live"),
            additional_headers=stranger.headers,
            proxy=None,
        ) as socket:
            frames = await frames_until_closed(socket)
            answers.append((frames, socket.close_code))

    (frames, code), (missing_frames, missing_code) = answers
    assert code == missing_code == 1008
    assert [f["status"] for f in frames] == [404]
    assert frames[0]["detail"] == missing_frames[0]["detail"].replace(
        "nosuchthing", target
    )


async def test_a_feed_without_credentials_is_refused(
    running: Running, history: dict[str, Any]
) -> None:
    for query in ("", "?access_token=nx_bogus_key"):
        async with connect(
            ws_url(running, f"/api/runs/{history['completed']}/live{query}"),
            proxy=None,
        ) as socket:
            frames = await frames_until_closed(socket)
            code = socket.close_code

        assert code == 1008
        assert [f["status"] for f in frames] == [401]
        assert "nx_bogus_key" not in frames[0]["detail"]


async def test_open_feeds_hold_none_of_the_streams_consumers(
    running: Running, history: dict[str, Any]
) -> None:
    # The stream allows only so many consumers, and flows need them to run: a
    # tenant holding feeds open must not be able to use them up.
    owner = history["owner"]
    before = await consumers(running)

    async with (
        connect(
            ws_url(running, f"/api/runs/{history['running']}/live"),
            additional_headers=owner.headers,
            proxy=None,
        ) as run_feed,
        connect(
            ws_url(running, f"/api/flows/{history['flow']}/live"),
            additional_headers=owner.headers,
            proxy=None,
        ) as flow_feed,
    ):
        first = json.loads(await asyncio.wait_for(run_feed.recv(), 10))
        ready = json.loads(await asyncio.wait_for(flow_feed.recv(), 10))
        during = await consumers(running)

    assert (first["type"], ready["type"]) == ("run.triggered", "feed.ready")
    assert during == before


async def test_a_feed_whose_key_is_revoked_is_closed(
    running: Running, history: dict[str, Any]
) -> None:
    owner, flow = history["owner"], history["flow"]
    created = await running.http.post(
        "/api/keys", json={"name": "dashboard"}, headers=owner.headers
    )
    key = created.json()

    async with connect(
        ws_url(running, f"/api/flows/{flow}/live"),
        additional_headers={"Authorization": f"Bearer {key['secret']}"},
        proxy=None,
    ) as socket:
        ready = json.loads(await asyncio.wait_for(socket.recv(), 10))
        revoked = await running.http.delete(
            f"/api/keys/{key['id']}", headers=owner.headers
        )
        frames = await frames_until_closed(socket)
        code = socket.close_code

    assert ready["type"] == "feed.ready"
    assert revoked.status_code == 204
    assert [frame["status"] for frame in frames] == [401]
    assert code == 1008
