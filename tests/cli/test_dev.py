"""`nextra dev` as a newcomer runs it: up, ready, Ctrl-C, and up again on the same data."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from nextra.devstack.nats import free_port


@pytest.fixture
def data_dir() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="nextra-test-dev-"))
    yield home / "data"
    shutil.rmtree(home, ignore_errors=True)


def start(data_dir: Path, port: int) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("NEXTRA_")}
    environ["NEXTRA_LOG_FORMAT"] = "json"
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "nextra",
            "dev",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
    )


def wait_ready(process: subprocess.Popen[str], port: int, timeout: float = 60) -> dict:  # type: ignore[type-arg]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"nextra dev exited: {process.stderr.read()}")  # type: ignore[union-attr]
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=1)
            if response.status_code == 200:
                return response.json()  # type: ignore[no-any-return]
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise AssertionError("nextra dev did not become ready")


def interrupt(process: subprocess.Popen[str]) -> tuple[str, str]:
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=30)
    assert process.returncode == 0, stderr
    return stdout, stderr


def first_run_script() -> str:
    """The shell lines of the README's "A first run"."""
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    section = readme.split("## A first run", 1)[1]
    return section.split("```sh\n", 1)[1].split("```", 1)[0]


def read_banner(process: subprocess.Popen[str]) -> tuple[str, str]:
    """What ``nextra dev`` printed up to its demo key, and the key."""
    lines = []
    for line in process.stdout:  # type: ignore[union-attr]
        lines.append(line)
        found = re.search(r"API key \(new this start\): (nx_\S+)", line)
        if found:
            return "".join(lines), found.group(1)
    raise AssertionError(f"nextra dev printed no API key: {lines}")


def test_dev_comes_up_ready_stops_cleanly_and_reuses_its_data(data_dir: Path) -> None:
    port = free_port()

    first = start(data_dir, port)
    try:
        checks = wait_ready(first, port)
        banner, key = read_banner(first)
        # A newcomer's first run, exactly as the README shows it.
        script = first_run_script().replace("127.0.0.1:8080", f"127.0.0.1:{port}")
        tried = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**os.environ, "KEY": key},
        )
    finally:
        interrupt(first)
    assert tried.returncode == 0, tried.stderr
    started, ran, listed = tried.stdout.splitlines()
    assert '"status":"running"' in started
    assert '"status":"completed"' in ran and '"text":"hello"' in ran
    run_id = re.search(r'"run_id":"(\w+)"', ran)
    assert run_id is not None and run_id.group(1) in listed
    assert checks["checks"] == {
        "nats": "ok",
        "streams": "ok",
        "postgres": "ok",
        "migrations": "ok",
    }
    assert f"API  http://127.0.0.1:{port}" in banner
    assert not list(data_dir.glob("postgres/postmaster.pid")), "postgres left running"

    second = start(data_dir, port)
    try:
        wait_ready(second, port)
        banner = (
            second.stdout.readline()
            + second.stdout.readline()
            + second.stdout.readline()
        )  # type: ignore[union-attr]
        nats_url = re.search(r"nats://[\d.:]+", banner)
        assert nats_url is not None, banner
        listed = subprocess.run(
            [sys.executable, "-m", "nextra", "tenants", "list"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={
                **os.environ,
                "NEXTRA_NATS_URL": nats_url.group(0),
                "NEXTRA_DATABASE_URL": f"postgresql://postgres@/nextra?host={data_dir / 'postgres'}",
            },
        )
    finally:
        interrupt(second)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["demo", "free", "Demo"]
