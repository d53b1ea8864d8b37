"""Property-based API tests: Schemathesis drives the running app from its OpenAPI."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from typing import Any

import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import Case, CheckContext, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.errors import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    ignored_auth,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from nextra.api import create_app
from tests.api.conftest import Caller, Running
from tests.app.test_flows import YAML

PROBLEM = "application/problem+json"
PROBLEM_FIELDS = {"type", "title", "status", "detail"}
# Checked on 2xx answers only: the document does not yet declare the 4xx
# problem responses (see the xfail tests at the end).
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    ignored_auth,
]
POSITIVE_EXAMPLES = 30
NEGATIVE_EXAMPLES = 15
TIMEOUT = 15

Check = Callable[[CheckContext, schemathesis.Response, Case[Any]], bool | None]


def problem_document(
    ctx: CheckContext, response: schemathesis.Response, case: Case[Any]
) -> None:
    """Every 4xx and 5xx is an RFC 9457 problem document naming its status."""
    if response.status_code < 400:
        return
    content_type = (response.headers.get("content-type") or [""])[0]
    assert content_type.partition(";")[0].strip() == PROBLEM, (
        f"{response.status_code} came as {content_type!r}, not {PROBLEM}"
    )
    body = response.json()
    assert isinstance(body, dict), f"problem document is not an object: {body!r}"
    missing = PROBLEM_FIELDS - body.keys()
    assert not missing, f"problem document lacks {sorted(missing)}: {body!r}"
    assert body["status"] == response.status_code, body
    assert all(isinstance(body[f], str) for f in ("type", "title", "detail")), body


class Fuzzer:
    """Sends generated cases as one caller (or nobody), from a worker thread.

    The API runs in the test's event loop, so everything here must run off that
    loop, through ``asyncio.to_thread``.
    """

    def __init__(
        self, document: dict[str, Any], base_url: str, caller: Caller | None = None
    ) -> None:
        # Credentials go in through Schemathesis's auth config, so negative cases
        # that drop them stay negative and `ignored_auth` knows they are real.
        config: dict[str, Any] = {}
        if caller is not None:
            token = caller.headers["Authorization"].removeprefix("Bearer ")
            config = {"auth": {"openapi": {"bearer": {"bearer": token}}}}
        self.schema = schemathesis.openapi.from_dict(
            document, config=schemathesis.Config.from_dict(config)
        )
        self.base_url = base_url
        self.session = requests.Session()

    def operations(self) -> list[schemathesis.APIOperation[Any, Any, Any, Any]]:
        found = []
        for result in self.schema.get_all_operations():
            assert isinstance(result, Ok), result
            found.append(result.ok())
        return [op for op in found if op.path.startswith("/api/")]

    def send(
        self,
        case: Case[Any],
        checks: list[Check],
        headers: dict[str, str] | None = None,
        *,
        conform: bool = False,
    ) -> schemathesis.Response:
        """Send ``case`` and run ``checks`` on the answer; raise on a failure.

        With ``conform``, a 2xx answer must also match the document.
        """
        headers = headers or {}
        response = case.call(
            base_url=self.base_url,
            session=self.session,
            headers=headers,
            timeout=TIMEOUT,
        )
        if conform and 200 <= response.status_code < 300:
            checks = [*checks, *CONFORMANCE]
        # Checks that probe (`ignored_auth`) resend through the same transport.
        transport = {
            "base_url": self.base_url,
            "session": self.session,
            "headers": headers,
            "timeout": TIMEOUT,
        }
        case.validate_response(
            response, checks=checks, headers=headers, transport_kwargs=transport
        )
        return response

    def run(
        self,
        strategy: st.SearchStrategy[Case[Any]],
        examples: int,
        test: Callable[[Case[Any]], None],
    ) -> None:
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.filter_too_much,
                HealthCheck.data_too_large,
            ],
        )
        @given(case=strategy)
        def property_(case: Case[Any]) -> None:
            test(case)

        property_()

    def create_flow(self, caller: Caller, name: str) -> tuple[str, str]:
        response = self.session.post(
            f"{self.base_url}/api/flows",
            json={"name": name, "organism_yaml": YAML},
            headers=caller.headers,
            timeout=TIMEOUT,
        )
        assert response.status_code == 201, response.text
        return response.json()["id"], response.headers["etag"]

    def close(self) -> None:
        self.session.close()


async def _document(running: Running) -> dict[str, Any]:
    response = await running.http.get("/schema/openapi.json")
    assert response.status_code == 200
    document: dict[str, Any] = response.json()
    return document


async def _fuzzer(running: Running, caller: Caller | None) -> Fuzzer:
    base_url = str(running.http.base_url).rstrip("/")
    return Fuzzer(await _document(running), base_url, caller)


def _fuzz_as_owner(fuzzer: Fuzzer, owner: Caller) -> list[str]:
    """Every /api operation, positive then negative; the labels it covered."""
    covered = []
    # `*` lets generated edits of the seeded flow through to validation.
    headers = {"If-Match": "*"}
    for operation in fuzzer.operations():
        # A flow of its own per operation: a generated DELETE may remove it.
        flow_id, _ = fuzzer.create_flow(owner, f"seed {operation.label}")
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE_EXAMPLES),
            (GenerationMode.NEGATIVE, NEGATIVE_EXAMPLES),
        ):
            strategy = operation.as_strategy(generation_mode=mode)
            if "flow_id" in operation.path_parameters:
                seeded = operation.as_strategy(
                    generation_mode=mode, path_parameters={"flow_id": flow_id}
                )
                strategy = st.one_of(strategy, seeded)
            checks: list[Check] = [not_a_server_error, problem_document]
            if mode is GenerationMode.NEGATIVE:
                checks.append(negative_data_rejection)

            def check(case: Case[Any], checks: list[Check] = checks) -> None:
                fuzzer.send(case, checks, headers, conform=True)

            fuzzer.run(strategy, examples, check)
        covered.append(operation.label)
    return covered


async def test_generated_requests_get_no_5xx_and_conform_or_get_a_problem(
    running: Running,
) -> None:
    owner = await running.tenant()
    fuzzer = await _fuzzer(running, owner)
    try:
        covered = await asyncio.to_thread(_fuzz_as_owner, fuzzer, owner)
    finally:
        fuzzer.close()

    assert len(covered) >= 13, covered


def _snapshot(fuzzer: Fuzzer, owner: Caller, flow_id: str) -> dict[str, Any]:
    def get(path: str) -> requests.Response:
        response = fuzzer.session.get(
            f"{fuzzer.base_url}{path}", headers=owner.headers, timeout=TIMEOUT
        )
        assert response.status_code == 200, response.text
        return response

    flow = get(f"/api/flows/{flow_id}")
    return {
        "flow": flow.json(),
        "etag": flow.headers["etag"],
        "revisions": get(f"/api/flows/{flow_id}/revisions").json(),
        "keys": get("/api/keys").json(),
    }


def _refuses_the_body(response: schemathesis.Response) -> bool:
    """A 400 about the body alone, decided before any lookup: it reveals nothing.

    The document lets generated bodies carry fields the app refuses by name.
    """
    if response.status_code != 400:
        return False
    errors = response.json().get("errors") or [{}]
    return all(error.get("source") == "body" for error in errors)


def _fuzz_as_stranger(fuzzer: Fuzzer, forced: dict[str, str], etag: str) -> list[str]:
    """Operations naming a flow or key, their ids forced to the owner's."""
    # The owner's current ETag, so that an edit is refused for the flow's
    # absence and not for a missing or stale If-Match.
    headers = {"If-Match": etag}
    covered = []
    for operation in fuzzer.operations():
        names = {p.name for p in operation.path_parameters}
        ids = {name: value for name, value in forced.items() if name in names}
        if not ids:
            continue
        modes = [GenerationMode.POSITIVE]
        if operation.body or any(
            p.name not in ids for p in operation.iter_parameters()
        ):
            modes.append(GenerationMode.NEGATIVE)
        for mode in modes:
            strategy = operation.as_strategy(generation_mode=mode, path_parameters=ids)

            def check(case: Case[Any], mode: GenerationMode = mode) -> None:
                response = fuzzer.send(
                    case, [not_a_server_error, problem_document], headers
                )
                if mode is GenerationMode.POSITIVE:
                    allowed = response.status_code == 404 or _refuses_the_body(response)
                else:
                    allowed = 400 <= response.status_code < 500
                assert allowed, (
                    f"{response.status_code} for "
                    f"{case.as_curl_command(headers=headers)}: {response.text}"
                )

            fuzzer.run(strategy, POSITIVE_EXAMPLES, check)
        covered.append(operation.label)
    return covered


async def test_another_tenant_cannot_see_or_touch_a_flow_with_any_request(
    running: Running,
) -> None:
    owner, stranger = await running.tenant(), await running.tenant()
    fuzzer = await _fuzzer(running, stranger)
    try:
        flow_id, etag = await asyncio.to_thread(fuzzer.create_flow, owner, "Private")
        key = await running.http.post(
            "/api/keys", json={"name": "owner's"}, headers=owner.headers
        )
        forced = {"flow_id": flow_id, "key_id": key.json()["id"]}
        before = await asyncio.to_thread(_snapshot, fuzzer, owner, flow_id)

        covered = await asyncio.to_thread(_fuzz_as_stranger, fuzzer, forced, etag)

        after = await asyncio.to_thread(_snapshot, fuzzer, owner, flow_id)
    finally:
        fuzzer.close()

    assert len(covered) >= 9, covered
    assert after == before
    assert (after["flow"]["name"], after["flow"]["status"]) == ("Private", "stopped")
    assert after["flow"]["revision"] == 1


def _route_operations(running: Running) -> set[tuple[str, str]]:
    app = create_app(running.platform.api_context())
    schema_path = app.openapi_config.path if app.openapi_config else "/schema"
    operations = set()
    for route in app.routes:
        if route.path == schema_path or route.path.startswith(f"{schema_path}/"):
            continue
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", route.path)
        for handler in getattr(route, "route_handlers", []):
            for method in handler.http_methods:
                if method not in {"OPTIONS", "HEAD"}:
                    operations.add((method, path))
    return operations


async def test_the_openapi_document_lists_exactly_the_apps_routes(
    running: Running,
) -> None:
    document = await _document(running)

    listed = {
        (method.upper(), path)
        for path, item in document["paths"].items()
        for method in item
        if method in {"get", "put", "post", "delete", "patch"}
    }

    assert listed == _route_operations(running)


def _probe_anonymously(fuzzer: Fuzzer) -> dict[str, set[int]]:
    """Each /api operation's statuses for generated requests without a real key."""
    statuses: dict[str, set[int]] = {}
    for operation in fuzzer.operations():
        seen = statuses.setdefault(operation.label, set())

        def check(case: Case[Any], seen: set[int] = seen) -> None:
            response = fuzzer.send(case, [not_a_server_error, problem_document])
            seen.add(response.status_code)
            if response.status_code == 401:
                assert response.headers.get("www-authenticate") == ["Bearer"]

        fuzzer.run(operation.as_strategy(), 5, check)
    return statuses


async def test_every_api_operation_declares_and_enforces_bearer_auth(
    running: Running,
) -> None:
    document = await _document(running)
    fuzzer = await _fuzzer(running, None)
    try:
        statuses = await asyncio.to_thread(_probe_anonymously, fuzzer)
    finally:
        fuzzer.close()

    assert statuses, "no /api operations in the document"
    assert statuses == {label: {401} for label in statuses}
    schemes = document.get("components", {}).get("securitySchemes", {})
    assert schemes.get("bearer", {}).get("scheme") == "bearer", schemes
    for path, item in document["paths"].items():
        for method, operation in item.items():
            required = operation.get("security", document.get("security", []))
            if path.startswith("/api/"):
                assert required == [{"bearer": []}], (method, path)
            else:
                assert not required, (method, path)


# Bugs the fuzzing found, each pinned by its smallest request.


async def test_a_nul_in_a_list_filter_is_refused_with_a_400(running: Running) -> None:
    owner = await running.tenant()

    response = await running.http.get("/api/flows?cursor=%00", headers=owner.headers)

    assert response.status_code == 400, response.text


async def test_a_nul_in_a_flow_id_is_refused_with_a_4xx(running: Running) -> None:
    owner = await running.tenant()

    responses = [
        await running.http.get(f"/api/flows/a%00b{tail}", headers=owner.headers)
        for tail in ("", "/status", "/revisions", "/revisions/1")
    ]

    assert [r.status_code for r in responses] == [400] * 4


def _undeclared(fuzzer: Fuzzer, case: Case[Any], owner: Caller) -> list[str]:
    """What Schemathesis finds undeclared in the answer to ``case``, sent as owner."""
    response = case.call(
        base_url=fuzzer.base_url,
        session=fuzzer.session,
        headers=owner.headers,
        timeout=TIMEOUT,
    )
    try:
        case.validate_response(
            response,
            checks=[
                status_code_conformance,
                content_type_conformance,
                response_schema_conformance,
            ],
        )
    except FailureGroup as group:
        return [f"{response.status_code}: {f.title}" for f in group.exceptions]
    return []


async def test_a_not_found_answer_is_declared_in_the_document(
    running: Running,
) -> None:
    owner = await running.tenant()
    fuzzer = await _fuzzer(running, owner)
    operation = fuzzer.schema["/api/flows/{flow_id}"]["GET"]
    case = operation.Case(path_parameters={"flow_id": "missing"})
    try:
        undeclared = await asyncio.to_thread(_undeclared, fuzzer, case, owner)
    finally:
        fuzzer.close()

    assert undeclared == []


async def test_an_invalid_request_answer_matches_its_declaration(
    running: Running,
) -> None:
    owner = await running.tenant()
    fuzzer = await _fuzzer(running, owner)
    operation = fuzzer.schema["/api/flows"]["POST"]
    case = operation.Case(body={"name": ""}, media_type="application/json")
    try:
        undeclared = await asyncio.to_thread(_undeclared, fuzzer, case, owner)
    finally:
        fuzzer.close()

    assert undeclared == []


async def test_request_bodies_declare_that_unknown_fields_are_refused(
    running: Running,
) -> None:
    schemas = (await _document(running))["components"]["schemas"]

    declared = {
        name: schemas[name].get("additionalProperties")
        for name in ("FlowInput", "ApiKeyInput")
    }

    assert declared == {"FlowInput": False, "ApiKeyInput": False}
