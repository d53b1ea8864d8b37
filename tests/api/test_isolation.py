"""Tenant isolation: tenant B can neither see nor touch tenant A's objects.

Every route that names an object answers B with 404, exactly as for an object
that does not exist, so B cannot even learn that A's ids are real.
"""

from __future__ import annotations

import pytest

from nextra.eventstore.subjects import ALL_RUNS
from nextra.readmodels.checkpoints import wait_projected
from tests.api.conftest import Caller, Running
from tests.app.test_flows import YAML
from tests.readmodels.test_runs_projection import completed_run


@pytest.fixture
async def setting(running: Running) -> tuple[Caller, Caller, str, str]:
    owner, stranger = await running.tenant(), await running.tenant()
    created = await running.http.post(
        "/api/flows",
        json={"name": "Private", "organism_yaml": YAML},
        headers=owner.headers,
    )
    key = await running.http.post(
        "/api/keys", json={"name": "secret-ish"}, headers=owner.headers
    )
    return owner, stranger, created.json()["id"], key.json()["id"]


@pytest.fixture
async def owner_run(running: Running, setting: tuple[Caller, Caller, str, str]) -> str:
    """A finished run of the owner's flow, projected."""
    owner, _, flow_id, _ = setting
    store = running.platform.runs_store
    run_id = await completed_run(store, owner.tenant_id, flow_id)
    await wait_projected(
        running.platform.engine, "runs", await store.last_sequence(ALL_RUNS), timeout=10
    )
    return run_id


ROUTES = [
    ("GET", "/api/flows/{flow}", None),
    ("PUT", "/api/flows/{flow}", {"name": "Mine now", "organism_yaml": YAML}),
    ("DELETE", "/api/flows/{flow}", None),
    ("POST", "/api/flows/{flow}/start", None),
    ("POST", "/api/flows/{flow}/stop", None),
    ("GET", "/api/flows/{flow}/status", None),
    ("GET", "/api/flows/{flow}/revisions", None),
    ("GET", "/api/flows/{flow}/revisions/1", None),
    ("GET", "/api/flows/{flow}/runs", None),
    ("GET", "/api/runs/{run}", None),
    ("DELETE", "/api/keys/{key}", None),
]


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
async def test_another_tenants_object_is_not_found(
    running: Running,
    setting: tuple[Caller, Caller, str, str],
    owner_run: str,
    method: str,
    path: str,
    body: dict[str, str] | None,
) -> None:
    owner, stranger, flow_id, key_id = setting
    url = path.format(flow=flow_id, key=key_id, run=owner_run)
    headers = {**stranger.headers, "If-Match": f'"{flow_id}.r1"'}

    response = await running.http.request(method, url, json=body, headers=headers)

    assert response.status_code == 404, response.text
    still = await running.http.get(f"/api/flows/{flow_id}", headers=owner.headers)
    assert still.status_code == 200
    assert (still.json()["name"], still.json()["status"]) == ("Private", "stopped")
    keys = await running.http.get("/api/keys", headers=owner.headers)
    assert key_id in {k["id"] for k in keys.json()}
    assert not next(k for k in keys.json() if k["id"] == key_id)["revoked"]


async def test_lists_show_only_the_callers_objects(
    running: Running, setting: tuple[Caller, Caller, str, str]
) -> None:
    _, stranger, flow_id, key_id = setting

    flows = await running.http.get("/api/flows", headers=stranger.headers)
    keys = await running.http.get("/api/keys", headers=stranger.headers)
    members = await running.http.get("/api/members", headers=stranger.headers)

    assert flow_id not in flows.text
    assert key_id not in keys.text
    assert members.json() == []


async def test_same_named_flows_of_two_tenants_do_not_collide(
    running: Running, setting: tuple[Caller, Caller, str, str]
) -> None:
    owner, stranger, flow_id, _ = setting

    theirs = await running.http.post(
        "/api/flows",
        json={"name": "Private", "organism_yaml": YAML},
        headers=stranger.headers,
    )

    assert theirs.status_code == 201
    mine = await running.http.get("/api/flows", headers=owner.headers)
    assert [f["id"] for f in mine.json()["items"]] == [flow_id]


VARIANTS = [
    "/API/runs/{run}",
    "/api/runs/{run}/",
    "/api//runs/{run}",
    "/api/runs/{run}%2F",
    "/api/runs%2F{run}",
    "/api/flows/{flow}/runs/",
    "/api/flows/{flow}//runs",
    "/Api/Flows/{flow}/Runs",
    "/api/flows/{flow}%2Fruns",
]


@pytest.mark.parametrize("path", VARIANTS)
async def test_case_and_encoding_variants_of_run_routes_reveal_nothing(
    running: Running,
    setting: tuple[Caller, Caller, str, str],
    owner_run: str,
    path: str,
) -> None:
    _, stranger, flow_id, _ = setting
    url = path.format(flow=flow_id, run=owner_run)

    answers = [
        await running.http.get(url, headers=stranger.headers),
        await running.http.get(url),
    ]

    for answer in answers:
        assert answer.status_code in {401, 404}, (url, answer.status_code)
        assert "Private" not in answer.text
        assert '"status":"completed"' not in answer.text.replace(" ", "")
