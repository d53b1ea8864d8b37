"""The nextra command as a person runs it: clear errors, no tracebacks."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import nats.js.errors
import pytest
from nats.aio.client import Client as NatsClient

from nextra.devstack.nats import free_port
from tests.app.test_flows import YAML


def nextra(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEXTRA_")}
    environ.update(env, NEXTRA_LOG_FORMAT="json", NEXTRA_CONNECT_TIMEOUT="2")
    return subprocess.run(
        [sys.executable, "-m", "nextra", *args],
        capture_output=True,
        text=True,
        env=environ,
        timeout=60,
        check=False,
    )


def assert_clean_failure(
    result: subprocess.CompletedProcess[str], *needles: str
) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for needle in needles:
        assert needle in result.stderr


def test_invalid_setting_is_named_without_a_traceback() -> None:
    result = nextra("streams", "apply", NEXTRA_API_PORT="eighty")

    assert_clean_failure(result, "NEXTRA_API_PORT")


def test_unreachable_nats_is_named(database_url: str) -> None:
    port = free_port()
    result = nextra(
        "streams",
        "apply",
        NEXTRA_NATS_URL=f"nats://127.0.0.1:{port}",
        NEXTRA_DATABASE_URL=database_url,
    )

    assert_clean_failure(result, f"cannot reach NATS at nats://127.0.0.1:{port}")


def test_unreachable_postgres_is_named(nats_url: str, tmp_path: Path) -> None:
    result = nextra(
        "streams",
        "apply",
        NEXTRA_NATS_URL=nats_url,
        NEXTRA_DATABASE_URL=f"postgresql://nobody@/nextra?host={tmp_path}",
    )

    assert_clean_failure(result, "cannot reach PostgreSQL")


def _reachable(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.skipif(not _reachable(4222), reason="no NATS on 127.0.0.1:4222 to try")
def test_nats_older_than_2_12_is_refused(database_url: str) -> None:
    """This machine runs Debian's NATS 2.9 on 4222: Nextra must say it is too old."""
    result = nextra(
        "streams",
        "apply",
        NEXTRA_NATS_URL="nats://127.0.0.1:4222",
        NEXTRA_DATABASE_URL=database_url,
    )

    if result.returncode == 0:
        pytest.skip("the server on 4222 is new enough")
    assert_clean_failure(result, "Nextra needs 2.12 or newer")


async def test_conflicting_stream_definition_is_named(
    nc: NatsClient, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    js = nc.jetstream()
    with contextlib.suppress(nats.js.errors.NotFoundError):
        await js.delete_stream("NX_CLI_CONFLICT")
    definition = tmp_path / "conflict.toml"
    definition.write_text('name = "NX_CLI_CONFLICT"\nsubjects = ["nx.cliconflict.>"]\n')
    env = {
        "NEXTRA_NATS_URL": nats_url,
        "NEXTRA_DATABASE_URL": database_url,
        "NEXTRA_STREAMS_DIR": str(tmp_path),
    }
    assert nextra("streams", "apply", **env).returncode == 0

    definition.write_text(
        'name = "NX_CLI_CONFLICT"\nsubjects = ["nx.cliconflict.>"]\nstorage = "memory"\n'
    )
    dry = nextra("streams", "apply", "--dry-run", **env)

    assert_clean_failure(dry, "NX_CLI_CONFLICT", "storage", "conflict.toml")
    await js.delete_stream("NX_CLI_CONFLICT")


def test_dry_run_prints_the_difference(
    nats_url: str, database_url: str, events_stream: str, tmp_path: Path, root: Path
) -> None:
    changed = (
        (root / "streams" / "events.toml")
        .read_text()
        .replace('duplicate_window = "2m"', 'duplicate_window = "3m"')
    )
    (tmp_path / "events.toml").write_text(changed)

    result = nextra(
        "streams",
        "apply",
        "--dry-run",
        NEXTRA_NATS_URL=nats_url,
        NEXTRA_DATABASE_URL=database_url,
        NEXTRA_STREAMS_DIR=str(tmp_path),
    )

    assert result.returncode == 0, result.stderr
    assert "NX_EVENTS: would update" in result.stdout
    assert "duplicate_window: 120.0 -> 180.0" in result.stdout


def test_tenant_created_shows_in_status_and_after_a_rebuild(
    nats_url: str, database_url: str, events_stream: str
) -> None:
    env = {"NEXTRA_NATS_URL": nats_url, "NEXTRA_DATABASE_URL": database_url}

    created = nextra(
        "tenants", "create", "Acme", "--id", "acme", "--tier", "pro", **env
    )
    status = nextra("projections", "status", **env)
    rebuilt = nextra("projections", "rebuild", "tenants", **env)
    listed = nextra("tenants", "list", **env)

    assert created.returncode == 0, created.stderr
    assert "created tenant acme (Acme, pro)" in created.stdout
    assert status.returncode == 0, status.stderr
    rows = {line.split()[0]: line.split() for line in status.stdout.splitlines()[1:]}
    assert rows["tenants"] == ["tenants", "1", "0", "2", "2"]
    assert rows["flows"] == ["flows", "1", "0", "0", "0"]
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "rebuilt tenants v1: 2 events" in rebuilt.stdout
    assert listed.stdout.split() == ["acme", "pro", "Acme"]


def test_rebuilding_an_unknown_projection_lists_the_known_ones(
    nats_url: str, database_url: str
) -> None:
    result = nextra(
        "projections",
        "rebuild",
        "nope",
        NEXTRA_NATS_URL=nats_url,
        NEXTRA_DATABASE_URL=database_url,
    )

    assert_clean_failure(result, "no projection named 'nope'", "tenants")


def test_event_docs_are_current() -> None:
    assert nextra("events", "docs", "--check").returncode == 0


def test_api_port_in_use_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]

        result = nextra("dev", "--data-dir", str(tmp_path), "--port", str(port))

    assert_clean_failure(result, f"cannot listen on 127.0.0.1:{port}", "--port")
    assert not (tmp_path / "nats").exists()


def test_flows_validate_names_line_listener_and_field(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(YAML)
    bad.write_text(YAML.replace("builtin:llm", "builtin:lm"))

    result = nextra("flows", "validate", str(good), str(bad))

    assert result.returncode == 1
    assert f"{good}: ok" in result.stdout
    assert f"{bad}:6:14: error: There is no built-in handler 'lm'" in result.stdout
    assert "[greeter, listeners[0].handler] (unknown-builtin)" in result.stdout


def test_created_tenant_gets_an_owner_key_that_the_api_accepts(
    nats_url: str, database_url: str, events_stream: str
) -> None:
    env = {"NEXTRA_NATS_URL": nats_url, "NEXTRA_DATABASE_URL": database_url}

    created = nextra("tenants", "create", "Keyed", **env)

    assert created.returncode == 0, created.stderr
    key_line = next(
        line for line in created.stdout.splitlines() if "owner API key" in line
    )
    assert key_line.split()[-1].startswith("nx_")
