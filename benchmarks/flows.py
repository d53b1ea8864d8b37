"""The flow API over HTTP, next to the raw event-store append rate of the same run.

Run with ``python -m benchmarks.flows``. Like ``benchmarks.eventstore`` it starts
its own nats-server (``sync_interval: always``) and PostgreSQL under a temporary
directory, or uses ``NEXTRA_NATS_URL`` / ``NEXTRA_DATABASE_URL`` when they are set.
It applies the streams and migrations, then runs the real platform as two separate
processes, ``python -m nextra api --port P`` and ``python -m nextra projector``, so
that the load generator (Debian's ``wrk``) shares no event loop with the API. The
tenants come from ``python -m nextra tenants create NAME --tier enterprise``.

Sections, each bounded in time:

1. raw baselines in this process: ``JetStreamEventStore.append`` of a
   FlowRevised-sized event, and ``append_atomic`` of the two writes a flow create
   makes (FlowRegistered on a tenant, FlowCreated on a new flow), 16 in flight;
2. POST /api/flows with wrk, and the same command through ``FlowCommands`` in this
   process (no HTTP, no read-your-writes wait);
3. 10,000 flows seeded for one tenant through the store in atomic batches, and the
   time the projector process takes to have them in the flows read model;
4. GET /api/flows?limit=50, first page and a page deep in the cursor chain
   (after ANALYZE of the flows table, unless ``--no-analyze``);
5. PUT /api/flows/{id} with ``If-Match: *`` over the seeded flows (each request
   changes the prompt, so each writes a revision), the time from an acknowledged
   append until the flows projection has it (what every API write waits for),
   and ``FlowCommands.revise``;
6. a few POST /api/flows into the 10,000-flow tenant, one at a time, with
   GET /health probing the API's event loop meanwhile.

Each section prints the CPU time of every process (API, projector, nats-server,
Postgres, wrk) and the Postgres sessions opened meanwhile. wrk is Debian's
(``apt-get install -y wrk``); without it the HTTP load sections are skipped.
Nothing asserts on wall-clock time; docs/performance.md has reference runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import os
import random
import re
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import msgspec
import nats

from benchmarks.eventstore import _cpu_seconds, _machine, _prepare_stream, _version_of
from nextra.app.flows import FlowCommands
from nextra.app.tenants import TenantCommands
from nextra.devstack.nats import EmbeddedNats, find_nats_server, free_port
from nextra.devstack.postgres import EmbeddedPostgres, asyncpg_dsn, ensure_database
from nextra.domain import tenants as tenant_decider
from nextra.domain.flows import HOSTED, validate_organism
from nextra.domain.flows import decider as flow_decider
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.flows import FlowCreated, FlowRevised
from nextra.events.tenants import FlowRegistered
from nextra.eventstore.base import Write
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.kernel.ids import new_id
from nextra.kernel.logging import configure_logging
from nextra.kernel.settings import project_root
from nextra.readmodels.database import upgrade_database

STREAM = "NX_EVENTS"
BENCH_DATABASE = f"nextra_bench_flows_{os.getpid()}"
PROMPT = "Say hello."
YAML = """\
organism:
  name: demo
listeners:
  - name: greeter
    description: Greets people
    handler: builtin:llm
    payload_class: TextInput
    agent: true
    prompt: Say hello.
"""
MARK = "@@N@@"  # where an update's request counter goes in its prompt


def _yaml(prompt: str) -> str:
    return YAML.replace(PROMPT, prompt)


@dataclass
class Options:
    threads: int
    connections: int
    duration: float
    wrk_timeout: float
    raw_concurrency: int
    raw_seconds: float
    command_seconds: float
    flows: int
    seed_batch: int
    deep_page: int
    projection_budget: float
    big_tenant_creates: int
    analyze: bool
    log_level: str
    reset_stream: bool


@dataclass
class Servers:
    nats_url: str
    postgres_url: str
    nats_note: str
    nats_pid: int | None
    postgres_pid: int | None


@dataclass
class Summary:
    """The lines of the final table."""

    rows: list[tuple[str, str, str]] = field(default_factory=list)

    def add(self, section: str, figure: str, note: str = "") -> None:
        self.rows.append((section, figure, note))


# ------------------------------------------------------------------------ helpers


def _rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f}"


def _percentiles(samples: list[float]) -> tuple[float, float, float]:
    """p50, p95, p99 of ``samples`` (seconds); zeros when there are none."""
    if len(samples) < 2:
        value = samples[0] if samples else 0.0
        return value, value, value
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return cuts[49], cuts[94], cuts[98]


def _tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid`` (with its reaped children) and its live children."""
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


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds used by each process of the platform over a section.

    Also counts the Postgres sessions opened meanwhile (pg_stat_database), which
    shows connection churn in the API's pool.
    """

    def __init__(
        self, servers: Servers, platform: PlatformProcesses, pg: asyncpg.Connection
    ) -> None:
        self.pg = pg
        self.sources: dict[str, Callable[[], float]] = {
            "api": partial(_cpu_seconds, platform.pid("api")),
            "projector": partial(_cpu_seconds, platform.pid("projector")),
        }
        if servers.nats_pid is not None:
            self.sources["nats-server"] = partial(_cpu_seconds, servers.nats_pid)
        if servers.postgres_pid is not None:
            self.sources["postgres"] = partial(_tree_cpu, servers.postgres_pid)
        self.sources["wrk"] = _children_cpu
        self.sources["this process"] = time.process_time

    async def _sessions(self) -> int:
        with contextlib.suppress(asyncpg.PostgresError):
            await self.pg.execute("SELECT pg_stat_clear_snapshot()")
            value = await self.pg.fetchval(
                "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
            )
            return int(value or 0)
        return 0

    @contextlib.asynccontextmanager
    async def measure(self, into: list[str]) -> AsyncIterator[None]:
        sessions = await self._sessions()
        before = {name: read() for name, read in self.sources.items()}
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        parts = []
        for name, read in self.sources.items():
            used = read() - before[name]
            if name == "wrk" and used < 0.005:
                continue
            parts.append(f"{name} {used:.1f}s ({_rate(used, seconds):.0%})")
        into.append(f"CPU over {seconds:.1f}s (share of one core): " + ", ".join(parts))
        await asyncio.sleep(0.6)  # sessions are counted as their stats are flushed
        opened = await self._sessions() - sessions
        into.append(f"Postgres sessions opened meanwhile: {opened:,}")


# ---------------------------------------------------------------------- processes


class PlatformProcesses:
    """``nextra api`` and ``nextra projector`` as child processes, logging to files."""

    def __init__(self, env: dict[str, str], logs: Path, port: int) -> None:
        self.env = env
        self.logs = logs
        self.port = port
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self) -> None:
        commands = {
            "projector": ["projector"],
            "api": ["api", "--port", str(self.port)],
        }
        for name, arguments in commands.items():
            with (self.logs / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "nextra", *arguments],
                    env=self.env,
                    cwd=project_root(),
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C is ours to pass on, in order
                )

    def pid(self, name: str) -> int | None:
        process = self.processes.get(name)
        return process.pid if process else None

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
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

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


async def create_tenant(env: dict[str, str], name: str) -> tuple[str, str]:
    """``nextra tenants create NAME --tier enterprise``: the tenant id and its key."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "nextra",
        "tenants",
        "create",
        name,
        "--tier",
        "enterprise",
        env=env,
        cwd=project_root(),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), 60)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    text = output.decode(errors="replace")
    key = re.search(r"owner API key \(shown once\): (nx_\S+)", text)
    tenant = re.search(r"created tenant (\S+)", text)
    if process.returncode != 0 or key is None or tenant is None:
        message = f"`nextra tenants create` failed ({process.returncode}):\n{text}"
        raise RuntimeError(message)
    return tenant.group(1), key.group(1)


async def wait_until_listed(
    http: httpx.AsyncClient, key: str, platform: PlatformProcesses, timeout: float
) -> float:
    """Seconds until GET /api/flows answers 200 for ``key``."""
    started = time.perf_counter()
    last = "no answer"
    while time.perf_counter() - started < timeout:
        platform.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            response = await http.get("/api/flows", headers=_auth(key))
            if response.status_code == 200:
                return time.perf_counter() - started
            last = f"{response.status_code} {response.text[:200]}"
        await asyncio.sleep(0.1)
    message = f"GET /api/flows did not answer 200 within {timeout:.0f}s: {last}"
    raise RuntimeError(message)


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


# ---------------------------------------------------------------------------- wrk

_LUA_REPORT = """
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and sample == nil then
    sample = tostring(status) .. " " .. string.sub(body or "", 1, 400)
  end
end
function done(summary, latency, requests)
  local totals = {}
  local samples = {}
  for _, t in ipairs(threads) do
    for k, v in pairs(t:get("statuses")) do totals[k] = (totals[k] or 0) + v end
    local one = t:get("sample")
    if one then table.insert(samples, one) end
  end
  local e = summary.errors
  io.write(string.format("NX summary %d %d %d %d %d %d %d\\n", summary.duration,
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("NX latency %d %d %d %d %d\\n", latency.min,
    latency:percentile(50), latency:percentile(95), latency:percentile(99),
    latency.max))
  for k, v in pairs(totals) do io.write(string.format("NX status %d %d\\n", k, v)) end
  for _, s in ipairs(samples) do
    io.write("NX sample ", (string.gsub(s, "%s+", " ")), "\\n")
  end
end
"""


def _lua_string(text: str) -> str:
    level = "=" * 4
    if f"]{level}]" in text:
        message = "text would end the Lua long string early"
        raise ValueError(message)
    return f"[{level}[{text}]{level}]"


def lua_static(method: str, key: str, body: bytes | None = None) -> str:
    """A wrk script sending the same request over and over."""
    lines = [
        f'wrk.method = "{method}"',
        f'wrk.headers["Authorization"] = "Bearer {key}"',
    ]
    if body is not None:
        lines.append('wrk.headers["Content-Type"] = "application/json"')
        lines.append(f"wrk.body = {_lua_string(body.decode())}")
    lines += ["function init(args)", "  statuses = {}", "end"]
    return "\n".join(lines) + "\n" + _LUA_REPORT


def lua_updates(key: str, flow_ids: list[str], threads: int, body: bytes) -> str:
    """A wrk script putting a new revision of a different flow each request.

    Each thread takes every ``threads``-th flow and cycles over them, so two
    requests in flight never name the same flow; the prompt carries the thread
    and request number, so every PUT changes the flow and writes a revision.
    """
    prefix, suffix = body.decode().split(MARK)
    ids = ",".join(f'"{flow_id}"' for flow_id in flow_ids)
    return (
        f"""
wrk.method = "PUT"
wrk.headers["Authorization"] = "Bearer {key}"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["If-Match"] = "*"
local ids = {{{ids}}}
local prefix = {_lua_string(prefix)}
local suffix = {_lua_string(suffix)}
function init(args)
  statuses = {{}}
  mine = {{}}
  for i = 1, #ids do
    if (i - 1) % {threads} == tid then mine[#mine + 1] = ids[i] end
  end
  n = 0
end
function request()
  n = n + 1
  local id = mine[(n - 1) % #mine + 1]
  return wrk.format(nil, "/api/flows/" .. id, nil, prefix .. tid .. "-" .. n .. suffix)
end
"""
        + _LUA_REPORT
    )


@dataclass
class WrkResult:
    seconds: float
    requests: int
    statuses: dict[int, int]
    socket_errors: dict[str, int]
    latency_us: tuple[int, int, int, int, int]  # min, p50, p95, p99, max
    samples: list[str]

    @property
    def non_2xx(self) -> int:
        return sum(n for status, n in self.statuses.items() if not 200 <= status < 300)

    @property
    def ok(self) -> int:
        return self.requests - self.non_2xx

    def lines(self) -> list[str]:
        low, p50, p95, p99, high = (value / 1000 for value in self.latency_us)
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(self.statuses.items()))
        errors = ", ".join(f"{k} {v}" for k, v in self.socket_errors.items() if v)
        lines = [
            f"{_rate(self.requests, self.seconds):,.1f} requests/s "
            f"({self.requests:,} in {self.seconds:.1f}s; 2xx {_rate(self.ok, self.seconds):,.1f}/s)",
            f"latency ms: p50 {p50:.1f}, p95 {p95:.1f}, p99 {p99:.1f} "
            f"(min {low:.1f}, max {high:.1f})",
            f"statuses: {statuses or 'none'}; non-2xx: {self.non_2xx:,}"
            + (f"; socket errors: {errors}" if errors else ""),
        ]
        lines += [f"first non-2xx body: {sample}" for sample in self.samples[:2]]
        return lines


async def run_wrk(
    wrk: str,
    url: str,
    script: str,
    scratch: Path,
    options: Options,
    *,
    name: str,
    sample: Callable[[], Awaitable[int]] | None = None,
    timeline: list[int] | None = None,
) -> WrkResult:
    """Run wrk for ``options.duration`` seconds; optionally sample a counter each second."""
    path = scratch / f"{name}.lua"
    path.write_text(script)
    process = await asyncio.create_subprocess_exec(
        wrk,
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{options.duration:g}s",
        f"--timeout={options.wrk_timeout:g}s",
        "-s",
        str(path),
        url,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        communicate = asyncio.create_task(process.communicate())
        if sample is not None and timeline is not None:
            timeline.append(await sample())
            while not communicate.done():
                await asyncio.wait({communicate}, timeout=1.0)
                if not communicate.done():
                    timeline.append(await sample())
            timeline.append(await sample())
        output, _ = await asyncio.wait_for(communicate, options.duration + 60)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    return _parse_wrk(output.decode(errors="replace"))


def _parse_wrk(text: str) -> WrkResult:
    summary = latency = None
    statuses: dict[int, int] = {}
    samples = []
    for line in text.splitlines():
        if line.startswith("NX summary "):
            summary = [int(v) for v in line.split()[2:]]
        elif line.startswith("NX latency "):
            latency = tuple(int(v) for v in line.split()[2:])
        elif line.startswith("NX status "):
            status, count = line.split()[2:]
            statuses[int(status)] = int(count)
        elif line.startswith("NX sample "):
            samples.append(line.removeprefix("NX sample "))
    if summary is None or latency is None or len(latency) != 5:
        message = f"could not read wrk's output:\n{text}"
        raise RuntimeError(message)
    duration, requests, connect, read, write, _status, timeout = summary
    return WrkResult(
        seconds=duration / 1e6,
        requests=requests,
        statuses=statuses,
        socket_errors={
            "connect": connect,
            "read": read,
            "write": write,
            "timeout": timeout,
        },
        latency_us=(latency[0], latency[1], latency[2], latency[3], latency[4]),
        samples=samples,
    )


def _per_second(timeline: list[int]) -> str:
    steps = [after - before for before, after in itertools.pairwise(timeline)]
    return ", ".join(str(step) for step in steps)


# -------------------------------------------------------------- in-process figures


@dataclass
class Timed:
    done: int = 0
    failed: dict[str, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0

    def line(self, unit: str) -> str:
        p50, p95, p99 = _percentiles(self.latencies)
        failed = ", ".join(f"{k} {v}" for k, v in self.failed.items())
        return (
            f"{_rate(self.done, self.seconds):,.0f} {unit}/s ({self.done:,} in "
            f"{self.seconds:.1f}s), latency ms p50 {_ms(p50)}, p95 {_ms(p95)}, "
            f"p99 {_ms(p99)}" + (f"; failed: {failed}" if failed else "")
        )


async def timed_workers(
    workers: int, seconds: float, step: Callable[[int], Awaitable[None]]
) -> Timed:
    """``workers`` loops calling ``step(worker)`` until ``seconds`` have passed."""
    timed = Timed()
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(worker: int) -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                await step(worker)
            except Exception as error:
                name = type(error).__name__
                timed.failed[name] = timed.failed.get(name, 0) + 1
                continue
            timed.latencies.append(time.perf_counter() - began)
            timed.done += 1

    await asyncio.gather(*(loop(worker) for worker in range(workers)))
    timed.seconds = time.perf_counter() - started
    return timed


def revised_event(canvas: dict[str, Any]) -> FlowRevised:
    """A FlowRevised like the ones the update section writes."""
    return FlowRevised(
        revision=2,
        name="Updated flow",
        organism_yaml=_yaml("Say hello 0-1234."),
        canvas=canvas,
        changes=["listener greeter changed: prompt"],
    )


async def raw_single_appends(
    store: JetStreamEventStore, event: FlowRevised, concurrency: int, seconds: float
) -> Timed:
    """Single-event appends, each appender on its own aggregate (kind ``bench``).

    No projection follows kind ``bench``, so the projector process stays idle.
    """
    tenant = new_id()
    aggregates = [AggregateRef(tenant, "bench", new_id()) for _ in range(concurrency)]
    versions = [0] * concurrency

    async def step(worker: int) -> None:
        result = await store.append(
            aggregates[worker],
            [event],
            expected_version=versions[worker],
            context=CommandContext(actor="bench"),
        )
        versions[worker] = result.last_sequence

    await timed_workers(concurrency, 0.5, step)  # warm up
    return await timed_workers(concurrency, seconds, step)


async def raw_create_appends(
    store: JetStreamEventStore, created: FlowCreated, concurrency: int, seconds: float
) -> Timed:
    """The two writes of a flow create in one atomic append, without the load.

    Each appender has its own tenant-like aggregate (kinds ``bench_tenant`` and
    ``bench_flow``), so nothing conflicts: the store's ceiling for creates.
    """
    tenants = [new_id() for _ in range(concurrency)]
    versions = [0] * concurrency

    async def step(worker: int) -> None:
        tenant = tenants[worker]
        flow_id = new_id()
        results = await store.append_atomic(
            [
                Write(
                    AggregateRef(tenant, "bench_tenant", tenant),
                    [FlowRegistered(flow_id=flow_id)],
                    versions[worker],
                ),
                Write(AggregateRef(tenant, "bench_flow", flow_id), [created], 0),
            ],
            context=CommandContext(actor="bench"),
        )
        versions[worker] = results[0].last_sequence

    await timed_workers(concurrency, 0.5, step)
    return await timed_workers(concurrency, seconds, step)


async def seed_flows(
    store: JetStreamEventStore,
    tenant_id: str,
    count: int,
    batch: int,
    template: FlowCreated,
) -> tuple[list[str], float]:
    """``count`` more flows for ``tenant_id``: FlowRegistered + FlowCreated each.

    Each batch is one atomic append of ``batch`` registrations on the tenant and
    ``batch`` creations, the same events FlowCommands.create writes one at a time.
    """
    tenant = AggregateRef(tenant_id, "tenant", tenant_id)
    history = await store.load(tenant)
    version = history[-1].sequence
    flow_ids: list[str] = []
    started = time.perf_counter()
    for first in range(0, count, batch):
        ids = [new_id() for _ in range(min(batch, count - first))]
        creations = [
            Write(
                AggregateRef(tenant_id, "flow", flow_id),
                flow_decider.decide(
                    flow_decider.FlowState(),
                    flow_decider.CreateFlow(
                        flow_id=flow_id,
                        name=f"Flow {first + number:05d}",
                        description="",
                        organism_yaml=template.organism_yaml,
                        canvas=template.canvas,
                    ),
                ),
                0,
            )
            for number, flow_id in enumerate(ids)
        ]
        registrations = [FlowRegistered(flow_id=flow_id) for flow_id in ids]
        results = await store.append_atomic(
            [Write(tenant, registrations, version), *creations],
            context=CommandContext(actor="bench"),
        )
        version = results[0].last_sequence
        flow_ids += ids
    return flow_ids, time.perf_counter() - started


async def wait_checkpoint(
    pg: asyncpg.Connection, projection: str, target: int, budget: float
) -> tuple[int, float]:
    started = time.perf_counter()
    reached = 0
    while time.perf_counter() - started < budget:
        reached = int(
            await pg.fetchval(
                "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1",
                projection,
            )
            or 0
        )
        if reached >= target:
            break
        await asyncio.sleep(0.05)
    return reached, time.perf_counter() - started


# ------------------------------------------------------------------------ sections


@dataclass
class Run:
    """What the sections share."""

    servers: Servers
    options: Options
    env: dict[str, str]
    scratch: Path
    platform: PlatformProcesses
    store: JetStreamEventStore
    pg: asyncpg.Connection
    http: httpx.AsyncClient
    wrk: str | None
    cpu: CpuMeter
    summary: Summary
    base_url: str


def _section(title: str) -> None:
    print(f"\n{title}", flush=True)


def _show(lines: list[str]) -> None:
    for line in lines:
        print(f"  {line}", flush=True)


async def section_raw(run: Run, canvas: dict[str, Any]) -> tuple[float, float]:
    options = run.options
    revised = revised_event(canvas)
    created = FlowCreated(
        name="Flow 00000", organism_yaml=YAML, canvas=canvas, description=""
    )
    size = len(REGISTRY.encode(revised))
    _section(
        f"1. raw event store, {options.raw_concurrency} appenders, "
        f"{options.raw_seconds:g}s each"
    )
    notes: list[str] = []
    async with run.cpu.measure(notes):
        single = await raw_single_appends(
            run.store, revised, options.raw_concurrency, options.raw_seconds
        )
    _show(
        [
            f"append of a FlowRevised ({size:,} bytes of JSON): "
            + single.line("appends"),
            *notes,
        ]
    )
    notes = []
    async with run.cpu.measure(notes):
        pair = await raw_create_appends(
            run.store, created, options.raw_concurrency, options.raw_seconds
        )
    _show(
        [
            "append_atomic of FlowRegistered + FlowCreated (a create's two writes): "
            + pair.line("creates"),
            *notes,
        ]
    )
    single_rate = _rate(single.done, single.seconds)
    pair_rate = _rate(pair.done, pair.seconds)
    run.summary.add(
        "raw append, FlowRevised",
        f"{single_rate:,.0f}/s",
        f"{options.raw_concurrency} in flight, p50 {_ms(_percentiles(single.latencies)[0])} ms",
    )
    run.summary.add(
        "raw atomic 2-write append",
        f"{pair_rate:,.0f}/s",
        f"{options.raw_concurrency} in flight, p50 {_ms(_percentiles(pair.latencies)[0])} ms",
    )
    return single_rate, pair_rate


def _wrk_flags(options: Options) -> str:
    return f"wrk -t{options.threads} -c{options.connections} -d{options.duration:g}s"


async def section_creates(
    run: Run, tenant_id: str, key: str, command_tenant: str, pair_rate: float
) -> None:
    options = run.options
    body = msgspec.json.encode({"name": "Bench flow", "organism_yaml": YAML})
    _section(f"2. flow creates: POST /api/flows, {_wrk_flags(options)}")
    if run.wrk is None:
        _show(["skipped: wrk is not installed"])
    else:

        async def flows_of_tenant() -> int:
            return int(
                await run.pg.fetchval(
                    "SELECT count(*) FROM flows WHERE tenant_id = $1", tenant_id
                )
            )

        timeline: list[int] = []
        notes: list[str] = []
        async with run.cpu.measure(notes):
            result = await run_wrk(
                run.wrk,
                f"{run.base_url}/api/flows",
                lua_static("POST", key, body),
                run.scratch,
                options,
                name="create",
                sample=flows_of_tenant,
                timeline=timeline,
            )
        _show(result.lines())
        _show(
            [
                f"flows of the tenant in the read model, added per second: "
                f"{_per_second(timeline)} (now {timeline[-1]:,})",
                *notes,
            ]
        )
        rate = _rate(result.ok, result.seconds)
        _, p50, p95, p99, _ = (v / 1000 for v in result.latency_us)
        run.summary.add(
            "POST /api/flows (HTTP)",
            f"{rate:,.1f}/s",
            f"p50 {p50:.0f} / p95 {p95:.0f} / p99 {p99:.0f} ms; non-2xx "
            f"{result.non_2xx}; {rate / pair_rate:.3f} of raw atomic append",
        )

    validate = partial(validate_organism, policy=HOSTED)
    commands = FlowCommands(run.store, validate)
    number = 0

    async def create(_: int) -> None:
        nonlocal number
        number += 1
        await commands.create(
            command_tenant,
            name=f"Command flow {number}",
            organism_yaml=YAML,
            context=CommandContext(actor="bench"),
        )

    concurrency = options.connections
    notes = []
    async with run.cpu.measure(notes):
        timed = await timed_workers(concurrency, options.command_seconds, create)
    _show(
        [
            f"FlowCommands.create in this process, {concurrency} in flight, "
            f"one fresh tenant, {options.command_seconds:g}s: " + timed.line("creates"),
            *notes,
        ]
    )
    rate = _rate(timed.done, timed.seconds)
    run.summary.add(
        "FlowCommands.create (no HTTP)",
        f"{rate:,.1f}/s",
        f"p50 {_ms(_percentiles(timed.latencies)[0])} ms; {rate / pair_rate:.3f} of raw",
    )


async def section_seed(
    run: Run, tenant_id: str, template: FlowCreated, existing: int
) -> list[str] | None:
    options = run.options
    count = options.flows - existing
    _section(f"3. seeding {options.flows:,} flows for one tenant through the store")
    notes: list[str] = []
    async with run.cpu.measure(notes):
        flow_ids, seconds = await seed_flows(
            run.store, tenant_id, count, options.seed_batch, template
        )
        target = await run.store.last_sequence("nx.ev.*.flow.*")
        reached, waited = await wait_checkpoint(
            run.pg, "flows", target, options.projection_budget
        )
    rows = await run.pg.fetchval(
        "SELECT count(*) FROM flows WHERE tenant_id = $1", tenant_id
    )
    _show(
        [
            f"appended {count:,} FlowRegistered + {count:,} FlowCreated in "
            f"{-(-count // options.seed_batch)} atomic appends in {seconds:.1f}s",
            f"flows projection reached sequence {reached:,} of {target:,} "
            f"{waited:.1f}s later ({_rate(count, seconds + waited):,.0f} flows/s "
            f"end to end); {rows:,} flows of the tenant in the read model",
            *notes,
        ]
    )
    if options.analyze:
        # Autovacuum would analyze the grown table within a minute or so; until
        # then the planner does not know the tenant has 10,000 rows (see --no-analyze).
        await run.pg.execute("ANALYZE flows")
        _show(["ANALYZE flows (as autovacuum would soon); --no-analyze skips it"])
    else:
        _show(["flows not analyzed since the seed (--no-analyze)"])
    if reached < target:
        _show(["the projection did not catch up within the budget"])
        return None
    run.summary.add(
        f"seed {count:,} flows + project",
        f"{seconds:.1f}s + {waited:.1f}s",
        "store append_atomic in batches; flows projection in the projector process",
    )
    return flow_ids


async def section_lists(run: Run, tenant_id: str, key: str) -> None:
    options = run.options
    _section(f"4. flow list: GET /api/flows?limit=50, {_wrk_flags(options)}")
    page = options.deep_page
    cursor = await run.pg.fetchval(
        "SELECT flow_id FROM flows WHERE tenant_id = $1 AND NOT deleted "
        "ORDER BY flow_id DESC OFFSET $2 LIMIT 1",
        tenant_id,
        50 * (page - 1) - 1,
    )
    targets = [("first page", "/api/flows?limit=50")]
    if cursor is not None:
        targets.append(
            (
                f"page {page} (flows {50 * (page - 1) + 1:,}-{50 * page:,})",
                f"/api/flows?limit=50&cursor={cursor}",
            )
        )
    for label, path in targets:
        plan_ms, node = await _query_ms(
            run.pg, tenant_id, cursor if "cursor" in path else None
        )
        response = await run.http.get(path, headers=_auth(key))
        document = response.json()
        size = len(response.content)
        items = len(document.get("items", [])) if response.status_code == 200 else 0
        if run.wrk is None:
            _show([f"{label}: {response.status_code}, {items} items; wrk skipped"])
            continue
        notes: list[str] = []
        async with run.cpu.measure(notes):
            result = await run_wrk(
                run.wrk,
                f"{run.base_url}{path}",
                lua_static("GET", key),
                run.scratch,
                options,
                name="list",
            )
        _show(
            [
                f"{label}: {items} items, {size:,} bytes per response; the query "
                f"alone: {plan_ms:.2f} ms ({node}; EXPLAIN ANALYZE, median of 5)",
                *(f"  {line}" for line in result.lines()),
                *(f"  {note}" for note in notes),
            ]
        )
        _, p50, p95, p99, _ = (v / 1000 for v in result.latency_us)
        run.summary.add(
            f"GET /api/flows, {label.split(' (')[0]}",
            f"{_rate(result.ok, result.seconds):,.0f}/s",
            f"p50 {p50:.1f} / p95 {p95:.1f} / p99 {p99:.1f} ms; non-2xx {result.non_2xx}",
        )


async def _query_ms(
    pg: asyncpg.Connection, tenant_id: str, before: str | None
) -> tuple[float, str]:
    """Execution time of the page query read_flows sends, and its plan's scan node."""
    query = (
        "EXPLAIN (ANALYZE, FORMAT JSON) SELECT * FROM flows WHERE tenant_id = $1 "
        "AND deleted IS false {cursor}ORDER BY flow_id DESC LIMIT 51"
    )
    arguments: list[str] = [tenant_id]
    if before is None:
        query = query.format(cursor="")
    else:
        query = query.format(cursor="AND flow_id < $2 ")
        arguments.append(before)
    times = []
    node = "?"
    for _ in range(5):
        plan = await pg.fetchval(query, *arguments)
        document = msgspec.json.decode(plan) if isinstance(plan, str) else plan
        times.append(float(document[0]["Execution Time"]))
        top = document[0]["Plan"]
        while top.get("Node Type") == "Limit" and top.get("Plans"):
            top = top["Plans"][0]
        node = str(top.get("Node Type", "?"))
    return statistics.median(times), node


async def visibility_lag(
    run: Run, commands: FlowCommands, tenant_id: str, flow_ids: list[str]
) -> list[float]:
    """Seconds from an acknowledged revise until the flows checkpoint passes it.

    This is what every write through the API waits for before it answers (read
    your writes). A random pause before each sample spreads the appends over the
    projector's fetch cycle instead of landing each at the same point of it.
    """
    lags = []
    for number, flow_id in enumerate(flow_ids):
        await asyncio.sleep(random.uniform(0, 0.5))
        saved = await commands.revise(
            tenant_id,
            flow_id,
            expected_revision=None,
            name="Updated flow",
            organism_yaml=_yaml(f"Say hello lag-{number}."),
            context=CommandContext(actor="bench"),
        )
        assert saved.result is not None
        began = time.perf_counter()
        while time.perf_counter() - began < 5:
            reached = await run.pg.fetchval(
                "SELECT last_sequence FROM projection_checkpoints "
                "WHERE projection = 'flows'"
            )
            if reached >= saved.result.last_sequence:
                break
            await asyncio.sleep(0.002)
        lags.append(time.perf_counter() - began)
    return lags


async def section_updates(
    run: Run,
    tenant_id: str,
    key: str,
    flow_ids: list[str],
    single_rate: float,
) -> None:
    options = run.options
    body = msgspec.json.encode(
        {"name": "Updated flow", "organism_yaml": _yaml(f"Say hello {MARK}.")}
    )
    half = len(flow_ids) // 2
    http_ids, command_ids = flow_ids[:half], flow_ids[half:]
    _section(
        f"5. flow updates: PUT /api/flows/{{id}} with If-Match: *, "
        f"{_wrk_flags(options)}, over {len(http_ids):,} flows"
    )
    if run.wrk is None:
        _show(["skipped: wrk is not installed"])
    else:

        async def revisions() -> int:
            return int(
                await run.pg.fetchval(
                    "SELECT count(*) FROM flow_revisions WHERE tenant_id = $1",
                    tenant_id,
                )
            )

        timeline: list[int] = []
        notes: list[str] = []
        async with run.cpu.measure(notes):
            result = await run_wrk(
                run.wrk,
                f"{run.base_url}/api/flows",
                lua_updates(key, http_ids, options.threads, body),
                run.scratch,
                options,
                name="update",
                sample=revisions,
                timeline=timeline,
            )
        _show(result.lines())
        _show(
            [
                f"revisions in the read model, added per second: {_per_second(timeline)}",
                *notes,
            ]
        )
        rate = _rate(result.ok, result.seconds)
        _, p50, p95, p99, _ = (v / 1000 for v in result.latency_us)
        run.summary.add(
            "PUT /api/flows/{id} (HTTP)",
            f"{rate:,.1f}/s",
            f"p50 {p50:.0f} / p95 {p95:.0f} / p99 {p99:.0f} ms; non-2xx "
            f"{result.non_2xx}; {rate / single_rate:.3f} of raw append",
        )

    validate = partial(validate_organism, policy=HOSTED)
    commands = FlowCommands(run.store, validate)
    concurrency = options.connections
    slices = [command_ids[worker::concurrency] for worker in range(concurrency)]
    counters = [0] * concurrency

    async def revise(worker: int) -> None:
        counters[worker] += 1
        mine = slices[worker]
        await commands.revise(
            tenant_id,
            mine[counters[worker] % len(mine)],
            expected_revision=None,
            name="Updated flow",
            organism_yaml=_yaml(f"Say hello c{worker}-{counters[worker]}."),
            context=CommandContext(actor="bench"),
        )

    lags = await visibility_lag(run, commands, tenant_id, command_ids[-12:])
    p50, p95, _ = _percentiles(lags)
    _show(
        [
            f"from an acknowledged FlowCommands.revise to the flows checkpoint passing "
            f"it, {len(lags)} one at a time: p50 {_ms(p50)} ms, max {_ms(max(lags))} ms "
            f"(min {_ms(min(lags))})"
        ]
    )
    run.summary.add(
        "append -> flows read model",
        f"{_ms(p50)} ms",
        f"p50 of {len(lags)}, max {_ms(max(lags))} ms: what each write then waits for",
    )

    notes = []
    async with run.cpu.measure(notes):
        timed = await timed_workers(concurrency, options.command_seconds, revise)
    _show(
        [
            f"FlowCommands.revise in this process, {concurrency} in flight, "
            f"{options.command_seconds:g}s: " + timed.line("revisions"),
            *notes,
        ]
    )
    rate = _rate(timed.done, timed.seconds)
    run.summary.add(
        "FlowCommands.revise (no HTTP)",
        f"{rate:,.1f}/s",
        f"p50 {_ms(_percentiles(timed.latencies)[0])} ms; {rate / single_rate:.3f} of raw",
    )


async def section_big_tenant_creates(run: Run, tenant_id: str, key: str) -> None:
    count = run.options.big_tenant_creates
    if count <= 0:
        return
    _section(
        f"6. {count} POST /api/flows into the {run.options.flows:,}-flow tenant, "
        "one at a time, with GET /health every 20 ms meanwhile"
    )
    body = msgspec.json.encode({"name": "One more flow", "organism_yaml": YAML})
    timings = []
    headers = {**_auth(key), "Content-Type": "application/json"}
    for _ in range(count):
        stalls: list[float] = []
        finished = asyncio.Event()

        async def probe(stalls: list[float], finished: asyncio.Event) -> None:
            while not finished.is_set():
                began = time.perf_counter()
                await run.http.get("/health")
                stalls.append(time.perf_counter() - began)
                await asyncio.sleep(0.02)

        prober = asyncio.create_task(probe(stalls, finished))
        started = time.perf_counter()
        try:
            response = await run.http.post(
                "/api/flows", content=body, headers=headers, timeout=60
            )
        finally:
            finished.set()
            await prober
        seconds = time.perf_counter() - started
        timings.append(seconds)
        _show(
            [
                f"{response.status_code} in {_ms(seconds)} ms; meanwhile GET /health "
                f"took up to {_ms(max(stalls, default=0.0))} ms "
                f"(median {_ms(statistics.median(stalls) if stalls else 0.0)} ms)"
            ]
        )
    # Where the time goes: the create loads and folds the whole tenant aggregate.
    aggregate = AggregateRef(tenant_id, "tenant", tenant_id)
    began = time.perf_counter()
    history = await run.store.load(aggregate)
    loaded = time.perf_counter() - began
    began = time.perf_counter()
    tenant_decider.fold(recorded.event for recorded in history)
    folded = time.perf_counter() - began
    _show(
        [
            f"in this process: store.load of the tenant aggregate ({len(history):,} "
            f"events) {_ms(loaded)} ms, tenants.fold of them {_ms(folded)} ms"
        ]
    )
    run.summary.add(
        f"POST into a {run.options.flows:,}-flow tenant",
        f"{_ms(statistics.median(timings))} ms",
        f"median, one at a time; tenant load {_ms(loaded)} ms + fold {_ms(folded)} ms",
    )


# ---------------------------------------------------------------------------- run


async def prepare(servers: Servers, options: Options) -> tuple[str, bool]:
    """The events stream and a migrated database; its URL, and whether we made it."""
    external = bool(os.environ.get("NEXTRA_NATS_URL"))

    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(servers.nats_url, error_cb=quiet)
    try:
        created = await _prepare_stream(
            nc, external=external, reset=options.reset_stream
        )
    finally:
        await nc.close()
    url = await ensure_database(servers.postgres_url, BENCH_DATABASE)
    await upgrade_database(url)
    return url, created


async def cleanup(servers: Servers, delete_stream: bool) -> None:
    if delete_stream:
        with contextlib.suppress(Exception):
            nc = await nats.connect(servers.nats_url)
            try:
                await nc.jetstream().delete_stream(STREAM)
            finally:
                await nc.close()
    dsn, options = asyncpg_dsn(servers.postgres_url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        await connection.execute(
            f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'
        )
    finally:
        await connection.close()


async def run(
    servers: Servers,
    options: Options,
    env: dict[str, str],
    database_url: str,
    platform: PlatformProcesses,
    scratch: Path,
) -> None:
    wrk = shutil.which("wrk")
    nc = await nats.connect(servers.nats_url)
    store = JetStreamEventStore(nc, REGISTRY, stream=STREAM)
    dsn, pg_options = asyncpg_dsn(database_url)
    pg = await asyncpg.connect(dsn, **pg_options)
    base_url = f"http://127.0.0.1:{platform.port}"
    http = httpx.AsyncClient(base_url=base_url, timeout=30)
    try:
        print("Nextra flow API benchmark")
        for line in _machine():
            print(f"  {line}")
        load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
        print(f"  load average at start: {load}")
        version = nc.connected_server_version
        print(
            f"  nats-server {version.major}.{version.minor}.{version.patch}"
            f" ({servers.nats_note})"
        )
        print(
            f"  PostgreSQL {await pg.fetchval('SHOW server_version')} "
            f"(fsync={await pg.fetchval('SHOW fsync')}, synchronous_commit="
            f"{await pg.fetchval('SHOW synchronous_commit')})"
        )
        print(
            f"  litestar {_version_of('litestar')}, uvicorn {_version_of('uvicorn')}, "
            f"SQLAlchemy {_version_of('SQLAlchemy')}, asyncpg {_version_of('asyncpg')}, "
            f"nats-py {_version_of('nats-py')}"
        )
        if wrk is None:
            print(
                "\n  wrk is not installed, so the HTTP sections are skipped. On Debian: "
                "apt-get update && apt-get install -y wrk"
            )
        else:
            banner = subprocess.run(  # noqa: ASYNC221 - once, before any load
                [wrk, "--version"], capture_output=True, text=True, check=False
            )
            print(f"  {(banner.stdout or banner.stderr).splitlines()[0][:60]}")
        print(
            f"  platform: nextra api (port {platform.port}) and nextra projector as "
            f"separate processes, NEXTRA_LOG_LEVEL={options.log_level}"
        )

        started = time.perf_counter()
        tenants = await asyncio.gather(
            create_tenant(env, "Bench creates"), create_tenant(env, "Bench list")
        )
        (create_tenant_id, create_key), (list_tenant_id, list_key) = tenants
        for _, key in tenants:
            await wait_until_listed(http, key, platform, timeout=60)
        print(
            f"  two enterprise tenants with owner keys, listed after "
            f"{time.perf_counter() - started:.1f}s"
        )

        summary = Summary()
        shared = Run(
            servers,
            options,
            env,
            scratch,
            platform,
            store,
            pg,
            http,
            wrk,
            CpuMeter(servers, platform, pg),
            summary,
            base_url,
        )

        # One real create through FlowCommands gives the canvas the API stores,
        # which the raw baseline and the seeded flows reuse.
        validate = partial(validate_organism, policy=HOSTED)
        commands = FlowCommands(store, validate)
        first = await commands.create(
            list_tenant_id,
            name="Flow 99999",
            organism_yaml=YAML,
            context=CommandContext(actor="bench"),
        )
        template = FlowCreated(
            name="Flow", organism_yaml=first.organism_yaml, canvas=first.canvas
        )
        command_tenant = new_id()
        await TenantCommands(store).create(
            command_tenant,
            "Bench commands",
            tier="enterprise",
            context=CommandContext(actor="bench"),
        )

        single_rate, pair_rate = await section_raw(shared, first.canvas)
        platform.check_alive()
        await section_creates(
            shared, create_tenant_id, create_key, command_tenant, pair_rate
        )
        platform.check_alive()
        flow_ids = await section_seed(shared, list_tenant_id, template, existing=1)
        platform.check_alive()
        if flow_ids is not None:
            await section_lists(shared, list_tenant_id, list_key)
            platform.check_alive()
            await section_updates(
                shared, list_tenant_id, list_key, flow_ids, single_rate
            )
            platform.check_alive()
            await section_big_tenant_creates(shared, list_tenant_id, list_key)
            platform.check_alive()

        _print_summary(summary)
        problems = _log_problems(platform)
        if problems:
            print("\nWarnings and errors in the platform's logs (first 10):")
            _show(problems[:10])
        else:
            print("\nNo warnings or errors in the platform's logs.")
    finally:
        await http.aclose()
        await pg.close()
        await nc.close()


def _print_summary(summary: Summary) -> None:
    print("\nSummary")
    width = max(len(row[0]) for row in summary.rows) if summary.rows else 0
    fig = max(len(row[1]) for row in summary.rows) if summary.rows else 0
    for section, figure, note in summary.rows:
        print(f"  {section.ljust(width)}  {figure.rjust(fig)}  {note}")


def _log_problems(platform: PlatformProcesses) -> list[str]:
    found = []
    for name in platform.processes:
        with contextlib.suppress(OSError):
            for line in (platform.logs / f"{name}.log").read_text().splitlines():
                lowered = line.lower()
                if any(
                    word in lowered
                    for word in (
                        '"warning"',
                        '"error"',
                        "traceback",
                        "[warning",
                        "[error",
                    )
                ):
                    found.append(f"{name}: {line[:400]}")
    return found


def _options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.flows")
    parser.add_argument("--threads", type=int, default=2, help="wrk threads")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections")
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per wrk run"
    )
    parser.add_argument("--wrk-timeout", type=float, default=10.0)
    parser.add_argument("--raw-concurrency", type=int, default=16)
    parser.add_argument("--raw-seconds", type=float, default=5.0)
    parser.add_argument(
        "--command-seconds",
        type=float,
        default=5.0,
        help="seconds of FlowCommands calls in this process",
    )
    parser.add_argument("--flows", type=int, default=10_000, help="flows to list")
    parser.add_argument(
        "--seed-batch", type=int, default=400, help="flows per atomic seed append"
    )
    parser.add_argument(
        "--deep-page", type=int, default=181, help="which page of 50 to list deep"
    )
    parser.add_argument("--projection-budget", type=float, default=90.0)
    parser.add_argument("--big-tenant-creates", type=int, default=3)
    parser.add_argument(
        "--no-analyze",
        dest="analyze",
        action="store_false",
        help="list without running ANALYZE on the flows table after the seed",
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="NEXTRA_LOG_LEVEL of the api and projector processes",
    )
    parser.add_argument(
        "--reset-stream",
        action="store_true",
        help="with NEXTRA_NATS_URL: delete an existing events stream first",
    )
    args = parser.parse_args(argv)
    if args.seed_batch * 2 > 1000:
        parser.error("--seed-batch: at most 500 (two events per flow, 1000 per commit)")
    return Options(
        **{key.replace("-", "_"): value for key, value in vars(args).items()}
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    options = _options(argv)
    configure_logging("warning")
    signal.signal(signal.SIGTERM, _interrupt)  # stop everything, as Ctrl-C does
    try:
        _main(options)
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the platform and the servers are stopped", file=sys.stderr
        )
        raise SystemExit(130) from None


def _main(options: Options) -> None:
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        scratch = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="nx-bench-flows-"))
        )
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
        servers = Servers(nats_url, postgres_url, note, nats_pid, postgres_pid)

        database_url, created_stream = asyncio.run(prepare(servers, options))
        external = bool(os.environ.get("NEXTRA_NATS_URL"))
        stack.callback(
            lambda: asyncio.run(cleanup(servers, created_stream and external))
        )

        env = {
            **os.environ,
            "NEXTRA_NATS_URL": nats_url,
            "NEXTRA_DATABASE_URL": database_url,
            "NEXTRA_LOG_LEVEL": options.log_level,
            "NEXTRA_LOG_FORMAT": "json",
        }
        logs = scratch / "logs"
        logs.mkdir()
        platform = PlatformProcesses(env, logs, free_port())
        stack.callback(platform.stop)
        platform.start()

        started = time.perf_counter()
        try:
            asyncio.run(run(servers, options, env, database_url, platform, scratch))
        except RuntimeError as error:
            print(f"\nbenchmark stopped: {error}", file=sys.stderr)
            for name in platform.processes:
                print(f"\n--- nextra {name} log (tail) ---\n{platform.tail(name)}")
            raise SystemExit(1) from None
        measured = time.perf_counter() - started
    print(
        f"\nbenchmark took {time.perf_counter() - began:.0f}s "
        f"({measured:.0f}s with the platform up)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
