"""The flow API over HTTP, as a client uses it, against a running platform."""

from __future__ import annotations

from tests.api.conftest import Running
from tests.app.test_flows import YAML

PROBLEM = "application/problem+json"


async def test_a_flow_from_yaml_through_canvas_edits_limits_and_deletion(
    running: Running,
) -> None:
    http = running.http
    caller = await running.tenant(tier="free")
    auth = caller.headers

    created = await http.post(
        "/api/flows", json={"name": "Greeter", "organism_yaml": YAML}, headers=auth
    )
    assert created.status_code == 201, created.text
    flow = created.json()
    flow_id, etag = flow["id"], created.headers["etag"]
    assert created.headers["location"] == f"/api/flows/{flow_id}"
    assert flow["revision"] == 1 and flow["status"] == "stopped"

    read = await http.get(f"/api/flows/{flow_id}", headers=auth)
    canvas = read.json()["canvas"]
    assert {n["id"] for n in canvas["nodes"]} == {"trigger", "greeter"}
    assert read.headers["etag"] == etag

    for node in canvas["nodes"]:
        if node["id"] == "greeter":
            node["position"] = {"x": 600.0, "y": 40.0}
    moved = await http.put(
        f"/api/flows/{flow_id}",
        json={"name": "Greeter", "canvas": canvas},
        headers={**auth, "If-Match": etag},
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["revision"] == 2
    assert moved.json()["organism_yaml"] == YAML

    again = await http.get(f"/api/flows/{flow_id}", headers=auth)
    positions = {n["id"]: n["position"] for n in again.json()["canvas"]["nodes"]}
    assert positions["greeter"] == {"x": 600.0, "y": 40.0}

    stale = await http.put(
        f"/api/flows/{flow_id}",
        json={"name": "Greeter", "organism_yaml": YAML.replace("hello", "bye")},
        headers={**auth, "If-Match": etag},
    )
    assert stale.status_code == 412
    assert stale.headers["content-type"].startswith(PROBLEM)
    assert (stale.json()["expected"], stale.json()["got"]) == (1, 2)

    unconditional = await http.put(
        f"/api/flows/{flow_id}",
        json={"name": "Greeter", "organism_yaml": YAML},
        headers=auth,
    )
    assert unconditional.status_code == 428

    second = await http.post(
        "/api/flows", json={"name": "Two", "organism_yaml": YAML}, headers=auth
    )
    assert second.status_code == 402
    assert second.json()["where"] == "tier.flows"
    assert "free tier allows 1 flow;" in second.json()["detail"]

    started = await http.post(f"/api/flows/{flow_id}/start", headers=auth)
    status = await http.get(f"/api/flows/{flow_id}/status", headers=auth)
    stopped = await http.post(f"/api/flows/{flow_id}/stop", headers=auth)
    assert started.json()["status"] == "running"
    assert status.json() == {"id": flow_id, "status": "running", "revision": 2}
    assert stopped.json()["status"] == "stopped"

    revisions = await http.get(f"/api/flows/{flow_id}/revisions", headers=auth)
    assert [r["revision"] for r in revisions.json()] == [1, 2]
    assert revisions.json()[1]["actor"].startswith("api-key:")

    deleted = await http.delete(f"/api/flows/{flow_id}", headers=auth)
    gone = await http.get(f"/api/flows/{flow_id}", headers=auth)
    replacement = await http.post(
        "/api/flows", json={"name": "Two", "organism_yaml": YAML}, headers=auth
    )
    assert deleted.status_code == 204
    assert gone.status_code == 404
    assert replacement.status_code == 201


async def test_invalid_yaml_is_a_problem_with_every_error_located(
    running: Running,
) -> None:
    caller = await running.tenant()
    broken = YAML.replace("builtin:llm", "builtin:nope").replace(
        "payload_class: TextInput", "payload_class: Nope"
    )

    response = await running.http.post(
        "/api/flows",
        json={"name": "Broken", "organism_yaml": broken},
        headers=caller.headers,
    )

    assert response.status_code == 422
    errors = response.json()["errors"]
    assert {e["code"] for e in errors} == {"unknown-builtin", "unknown-payload-type"}
    assert all(e["listener"] == "greeter" and e["line"] for e in errors)


async def test_unknown_fields_are_refused_by_name(running: Running) -> None:
    caller = await running.tenant()

    response = await running.http.post(
        "/api/flows",
        json={"name": "X", "organism_yaml": YAML, "colour": "red"},
        headers=caller.headers,
    )

    assert response.status_code == 400
    assert "colour" in response.text


async def test_requests_without_valid_credentials_are_refused(running: Running) -> None:
    missing = await running.http.get("/api/flows")
    forged = await running.http.get(
        "/api/flows", headers={"Authorization": "Bearer nx_abcdefghijkl_" + "A" * 43}
    )

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert forged.status_code == 401
    assert forged.headers["content-type"].startswith(PROBLEM)


async def test_list_pages_with_a_cursor_and_filters(running: Running) -> None:
    caller = await running.tenant()
    http = running.http
    for name in ("alpha", "beta", "gamma"):
        await http.post(
            "/api/flows",
            json={"name": name, "organism_yaml": YAML},
            headers=caller.headers,
        )

    first = await http.get("/api/flows?limit=2", headers=caller.headers)
    rest = await http.get(
        f"/api/flows?limit=2&cursor={first.json()['next_cursor']}",
        headers=caller.headers,
    )
    named = await http.get("/api/flows?name=ET", headers=caller.headers)
    running_only = await http.get("/api/flows?status=running", headers=caller.headers)

    assert [f["name"] for f in first.json()["items"]] == ["gamma", "beta"]
    assert [f["name"] for f in rest.json()["items"]] == ["alpha"]
    assert rest.json()["next_cursor"] is None
    assert [f["name"] for f in named.json()["items"]] == ["beta"]
    assert running_only.json()["items"] == []


async def test_api_keys_are_shown_once_listed_without_secret_and_revocable(
    running: Running,
) -> None:
    caller = await running.tenant()
    http = running.http

    created = await http.post("/api/keys", json={"name": "ci"}, headers=caller.headers)
    secret = created.json()["secret"]
    listed = await http.get("/api/keys", headers=caller.headers)
    usable = await http.get("/api/flows", headers={"Authorization": f"Bearer {secret}"})
    await http.delete(f"/api/keys/{created.json()['id']}", headers=caller.headers)
    revoked = await http.get(
        "/api/flows", headers={"Authorization": f"Bearer {secret}"}
    )

    assert created.status_code == 201
    assert secret not in listed.text
    assert {k["name"] for k in listed.json()} == {"tests", "ci"}
    assert usable.status_code == 200
    assert revoked.status_code == 401


async def test_oversized_bodies_are_refused_before_reading_them(
    running: Running,
) -> None:
    caller = await running.tenant()
    huge = "x" * (2 * 1024 * 1024)

    response = await running.http.post(
        "/api/flows",
        json={"name": "Huge", "organism_yaml": huge},
        headers=caller.headers,
    )

    assert response.status_code == 413
    assert response.headers["content-type"].startswith(PROBLEM)


async def test_the_schema_declares_bearer_authentication(running: Running) -> None:
    schema = (await running.http.get("/schema/openapi.json")).json()

    assert schema["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert schema["paths"]["/api/flows"]["get"]["security"] == [{"bearer": []}]
    assert "security" not in schema["paths"]["/health"]["get"]
