"""Servers and platform processes for benchmarks that run the real platform.

``servers_up`` starts nats-server (``sync_interval: always``) and PostgreSQL
under a scratch directory, or takes ``NEXTRA_NATS_URL`` / ``NEXTRA_DATABASE_URL``
when they are set. ``prepare`` gives the benchmark empty streams and a database
of its own through the ``nextra`` command itself (``nextra streams apply``,
``nextra db upgrade``), and ``NextraProcesses`` runs ``nextra api``, ``nextra
projector`` and ``nextra worker`` as child processes logging JSON to files.
Used by ``benchmarks.runs``; ``benchmarks.eventstore`` and ``benchmarks.flows``
keep their own copies of the same steps.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import asyncpg
import nats
import nats.js.errors

from nextra.devstack.nats import EmbeddedNats, find_nats_server, free_port
from nextra.devstack.postgres import EmbeddedPostgres, asyncpg_dsn, ensure_database
from nextra.eventstore.topology import load_stream_definitions
from nextra.kernel.settings import project_root

__all__ = (
    "CpuMeter",
    "NextraProcesses",
    "Servers",
    "cleanup",
    "cpu_seconds",
    "create_tenant",
    "free_port",
    "machine_lines",
    "nextra_cli",
    "platform_env",
    "prepare",
    "servers_up",
    "tree_cpu",
    "version_of",
)


@dataclass
class Servers:
    """Where NATS and Postgres are, and their pids when this process started them."""

    nats_url: str
    postgres_url: str
    nats_note: str
    nats_pid: int | None
    postgres_pid: int | None

    @property
    def external_nats(self) -> bool:
        return self.nats_pid is None


@contextlib.contextmanager
def servers_up(scratch: Path) -> Iterator[Servers]:
    """NATS and Postgres for one benchmark: the environment's, or embedded ones."""
    with contextlib.ExitStack() as stack:
        nats_url = os.environ.get("NEXTRA_NATS_URL")
        nats_pid = None
        if nats_url:
            note = "NEXTRA_NATS_URL, with its own settings"
        else:
            server = EmbeddedNats(scratch / "nats")
            server.start()
            stack.callback(server.stop)
            nats_url = server.url
            nats_pid = server.process.pid if server.process else None
            note = f"embedded {find_nats_server()}, file storage, sync_interval: always"
        postgres_url = os.environ.get("NEXTRA_DATABASE_URL")
        postgres_pid = None
        if not postgres_url:
            postgres = EmbeddedPostgres(scratch / "pg" / "data")
            postgres.start()
            stack.callback(postgres.stop)
            postgres_url = postgres.url()
            postgres_pid = postgres.pid
        yield Servers(nats_url, postgres_url, note, nats_pid, postgres_pid)


def platform_env(servers: Servers, database_url: str, **extra: str) -> dict[str, str]:
    """The environment of a ``nextra`` child process on these servers."""
    return {
        **os.environ,
        "NEXTRA_NATS_URL": servers.nats_url,
        "NEXTRA_DATABASE_URL": database_url,
        "NEXTRA_LOG_FORMAT": "json",
        **extra,
    }


async def prepare(
    servers: Servers, database: str, env: dict[str, str], *, reset_streams: bool
) -> str:
    """Empty streams and a migrated database ``database``; the database's URL.

    On a NATS server the benchmark did not start, existing Nextra streams are
    refused unless ``reset_streams``, which deletes them and their events.
    """
    await _clear_streams(servers, reset=reset_streams)
    url = await ensure_database(servers.postgres_url, database)
    env["NEXTRA_DATABASE_URL"] = url
    await nextra_cli(env, "streams", "apply")
    await nextra_cli(env, "db", "upgrade")
    return url


async def _clear_streams(servers: Servers, *, reset: bool) -> None:
    nc = await nats.connect(servers.nats_url)
    try:
        js = nc.jetstream()
        for definition in load_stream_definitions(project_root() / "streams"):
            try:
                await js.stream_info(definition.name)
            except nats.js.errors.NotFoundError:
                continue
            if servers.external_nats and not reset:
                message = (
                    f"stream {definition.name} already exists on NEXTRA_NATS_URL; "
                    "the benchmark needs it empty. Point it at a scratch server, "
                    "or pass --reset-stream to delete the stream and its events."
                )
                raise SystemExit(message)
            await js.delete_stream(definition.name)
    finally:
        await nc.close()


async def cleanup(servers: Servers, database: str) -> None:
    """Drop the benchmark's database and, on a server of yours, its streams."""
    if servers.external_nats:
        with contextlib.suppress(Exception):
            nc = await nats.connect(servers.nats_url)
            try:
                js = nc.jetstream()
                for definition in load_stream_definitions(project_root() / "streams"):
                    with contextlib.suppress(nats.js.errors.NotFoundError):
                        await js.delete_stream(definition.name)
            finally:
                await nc.close()
    dsn, options = asyncpg_dsn(servers.postgres_url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        await connection.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await connection.close()


async def nextra_cli(env: dict[str, str], *arguments: str, timeout: float = 60) -> str:
    """Run ``python -m nextra ARGUMENTS`` to the end; its output.

    Raises:
        RuntimeError: It failed, with its output in the message.
    """
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nextra",
        *arguments,
        env=env,
        cwd=project_root(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    if process.returncode != 0:
        message = (
            f"`nextra {' '.join(arguments)}` failed ({process.returncode}):\n{text}"
        )
        raise RuntimeError(message)
    return text


async def create_tenant(env: dict[str, str], name: str, tier: str) -> tuple[str, str]:
    """``nextra tenants create NAME --tier TIER``: the tenant id and its owner key."""
    text = await nextra_cli(env, "tenants", "create", name, "--tier", tier)
    key = re.search(r"owner API key \(shown once\): (nx_\S+)", text)
    tenant = re.search(r"created tenant (\S+)", text)
    if key is None or tenant is None:
        message = f"could not read the tenant and key from:\n{text}"
        raise RuntimeError(message)
    return tenant.group(1), key.group(1)


class NextraProcesses:
    """``nextra`` subcommands running as child processes, each logging to a file.

    Each process gets a name (``api``, ``worker-1`` ...); its log is
    ``<logs>/<name>.log``, appended to across restarts.
    """

    def __init__(self, env: dict[str, str], logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str, *arguments: str, **extra_env: str) -> None:
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                [sys.executable, "-m", "nextra", *arguments],
                env={**self.env, **extra_env},
                cwd=project_root(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C is ours to pass on, in order
            )

    def pid(self, name: str) -> int | None:
        process = self.processes.get(name)
        return process.pid if process is not None and process.poll() is None else None

    def running(self, prefix: str = "") -> list[str]:
        return [
            name
            for name, process in self.processes.items()
            if name.startswith(prefix) and process.poll() is None
        ]

    def log_size(self, name: str) -> int:
        with contextlib.suppress(OSError):
            return (self.logs / f"{name}.log").stat().st_size
        return 0

    async def wait_logged(
        self, name: str, text: str, *, after: int = 0, timeout: float = 60
    ) -> float:
        """Seconds until ``text`` appears in the process's log past byte ``after``."""
        started = time.perf_counter()
        path = self.logs / f"{name}.log"
        while time.perf_counter() - started < timeout:
            self.check_alive()
            with contextlib.suppress(OSError), path.open("rb") as handle:
                handle.seek(after)
                if text.encode() in handle.read():
                    return time.perf_counter() - started
            await asyncio.sleep(0.05)
        message = f"nextra {name} did not log {text!r} within {timeout:.0f}s"
        raise RuntimeError(message)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.returncode is None and process.poll() is not None:
                message = (
                    f"nextra {name} exited with {process.returncode}; its log:\n"
                    + self.tail(name)
                )
                raise RuntimeError(message)

    def tail(self, name: str, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            text = (self.logs / f"{name}.log").read_text(errors="replace")
            return "\n".join(text.splitlines()[-lines:])
        return "(no log)"

    def stop(self, *names: str, timeout: float = 30) -> None:
        """SIGTERM the named processes (all when none are named) and wait."""
        chosen = [self.processes[name] for name in names] if names else []
        if not names:
            chosen = list(self.processes.values())
        for process in chosen:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in chosen:
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)

    def problems(self, limit: int = 10) -> list[str]:
        """Warnings, errors and tracebacks from every process's log."""
        found: list[str] = []
        markers = ('"warning"', '"error"', '"critical"', "traceback")
        for name in self.processes:
            with contextlib.suppress(OSError):
                for line in (self.logs / f"{name}.log").read_text().splitlines():
                    if any(marker in line.lower() for marker in markers):
                        found.append(f"{name}: {line[:400]}")
        return found[:limit]


# ----------------------------------------------------------------------- CPU time


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` and its live children (Postgres's backends)."""
    if pid is None:
        return 0.0
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / tick
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                total += (int(fields[11]) + int(fields[12])) / tick
    return total


class CpuMeter:
    """CPU seconds used by each process over a stretch of the benchmark.

    Sources are read by name when a stretch starts and when it ends; a process
    that starts or stops in between is counted for the part it was seen in.
    """

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], float]] = {}
        self.machine: Callable[[], float] = machine_busy

    def add(self, name: str, read: Callable[[], float]) -> None:
        self.sources[name] = read

    def add_pid(self, name: str, pid: Callable[[], int | None]) -> None:
        self.sources[name] = lambda: cpu_seconds(pid())

    def add_tree(self, name: str, pid: int | None) -> None:
        if pid is not None:
            self.sources[name] = partial(tree_cpu, pid)

    def snapshot(self) -> tuple[float, dict[str, float]]:
        values = {name: read() for name, read in self.sources.items()}
        values[_MACHINE] = self.machine()
        return time.perf_counter(), values

    def since(self, before: tuple[float, dict[str, float]]) -> str:
        """CPU seconds of each source since ``before``, and the share of one core.

        Ends with the machine's busy time from ``/proc/stat`` and the part of it
        that none of the sources account for (other processes, the kernel).
        """
        began, values = before
        seconds = time.perf_counter() - began
        parts = []
        total = 0.0
        for name, read in self.sources.items():
            used = max(read() - values.get(name, 0.0), 0.0)
            if used < 0.005:
                continue
            total += used
            parts.append(f"{name} {used:.1f}s ({used / seconds:.0%})")
        busy = self.machine() - values[_MACHINE]
        cores = os.cpu_count() or 1
        return (
            f"CPU over {seconds:.1f}s (share of one core): {', '.join(parts)}; "
            f"machine busy {busy:.1f}s of {seconds * cores:.1f}s "
            f"({busy / (seconds * cores):.0%}), of which not listed here "
            f"{max(busy - total, 0.0):.1f}s"
        )


_MACHINE = "\x00machine"


def machine_busy() -> float:
    """CPU seconds all cores have spent busy since boot (``/proc/stat``)."""
    with contextlib.suppress(OSError, IndexError, ValueError):
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[:8])
        busy = user + nice + system + irq + softirq + steal
        return busy / os.sysconf("SC_CLK_TCK")
    return 0.0


# ------------------------------------------------------------------------ machine


def machine_lines() -> list[str]:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                memory = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return [
        f"cpus: {os.cpu_count()} ({cpu}), memory: {memory}",
        f"python {platform.python_version()} on {platform.platform()}",
        f"load average at start: {load}",
    ]


def version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"
