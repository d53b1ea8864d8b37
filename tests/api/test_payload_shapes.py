"""E3: bodies of every odd size and shape get a 4xx, never a 5xx, and store nothing."""

from __future__ import annotations

import json

import pytest

from tests.api.conftest import Running
from tests.app.test_flows import YAML


@pytest.mark.parametrize(
    ("body", "status"),
    [
        pytest.param(("[" * 10_000 + "]" * 10_000).encode(), 400, id="nested-10000"),
        pytest.param(
            json.dumps({"name": "a\u0000b", "organism_yaml": YAML}).encode(),
            400,
            id="nul-in-name",
        ),
        pytest.param(
            json.dumps({"name": "x", "organism_yaml": YAML + "# \u0000\n"}).encode(),
            400,
            id="nul-in-yaml",
        ),
        pytest.param(
            b'{"name": "a\\ud800", "organism_yaml": "x"}', 400, id="surrogate"
        ),
        pytest.param(json.dumps({"name": "n" * 10_000}).encode(), 400, id="long-name"),
        pytest.param(b"not json", 400, id="not-json"),
        pytest.param(b"", 400, id="empty"),
    ],
)
async def test_odd_bodies_are_refused_with_a_problem(
    running: Running, body: bytes, status: int
) -> None:
    caller = await running.tenant()
    before = await running.platform.store.last_sequence()

    response = await running.http.post(
        "/api/flows",
        content=body,
        headers={**caller.headers, "content-type": "application/json"},
    )

    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert await running.platform.store.last_sequence() == before


async def test_nul_inside_canvas_text_is_refused(running: Running) -> None:
    caller = await running.tenant()
    created = await running.http.post(
        "/api/flows", json={"name": "ok", "organism_yaml": YAML}, headers=caller.headers
    )
    canvas = created.json()["canvas"]
    canvas["ui"] = {"note": "bad\u0000note"}

    response = await running.http.put(
        f"/api/flows/{created.json()['id']}",
        json={"name": "ok", "canvas": canvas},
        headers={**caller.headers, "If-Match": created.headers["etag"]},
    )

    assert response.status_code == 422, response.text


async def test_long_identifiers_are_refused(running: Running) -> None:
    caller = await running.tenant()

    response = await running.http.get(
        "/api/flows/" + "f" * 10_000, headers=caller.headers
    )

    assert response.status_code == 400


async def test_emoji_and_bidi_names_round_trip_unchanged(running: Running) -> None:
    caller = await running.tenant()
    name = "Flow \U0001f916 \u202eevil\u202c"

    created = await running.http.post(
        "/api/flows", json={"name": name, "organism_yaml": YAML}, headers=caller.headers
    )
    read = await running.http.get(
        f"/api/flows/{created.json()['id']}", headers=caller.headers
    )

    assert read.json()["name"] == name
