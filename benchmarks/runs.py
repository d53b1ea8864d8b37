"""Runs end to end: API, pump workers, projector, each figure next to a raw baseline.

Run with ``python -m benchmarks.runs`` (``--quick`` for a short pass). It starts
nats-server (``sync_interval: always``) and PostgreSQL as the other benchmarks
do, or uses ``NEXTRA_NATS_URL`` / ``NEXTRA_DATABASE_URL``; applies the streams
and migrations with ``nextra streams apply`` and ``nextra db upgrade``; and runs
the platform as separate processes: ``nextra api``, ``nextra projector`` and one
or two ``nextra worker``, with ``NEXTRA_TRUSTED_HANDLER_MODULES=benchmarks`` so
the flows can use the handlers of ``benchmarks.handlers``. Tenants come from
``nextra tenants create --tier enterprise``; flows are created and started
through the API. It prints a table with each figure next to a raw baseline
measured in the same run, and the details behind it:

1. 40 sequential light steps: a flow whose one listener computes fibo(10) and
   forwards to itself, triggered with ``POST /api/flows/{id}/runs?wait=60``,
   timed by the client and from the run's own events (one worker);
2. one-step runs started through the API by ``wrk`` as fast as the API takes
   them, with one worker and then with two; completions counted from the
   ``run.completed`` events; then half that rate, paced by this process's own
   HTTP client;
3. a noisy neighbour: tenant A gets 10,000 runs queued while the workers are
   stopped, then tenant B triggers 20 runs/s while two workers drain A's
   backlog; B's latency is compared with B alone;
5. a poison flow (anchors A10): tenant P's flow fails on every run while
   P triggers 50 runs/s; tenant B's runs at 20/s are compared with B alone
   and with B beside a healthy flow at P's rate (trigger to first step p95),
   and P's runs are timed to their failure;
4. raw baselines, before section 1 and again at the end: nats-py ``js.publish``
   of a ``run.triggered`` event's bytes and headers to a scratch stream, one at
   a time and 64 in flight, a core NATS request/reply round trip, and
   ``GET /health`` on the same API process with wrk.

Latency is taken from the events: trigger to first step is the first
``run.step_completed``'s ``started_at`` (the worker's clock, when the handler
began) minus the ``run.triggered`` event's stored time (the server's clock);
both clocks are this machine's. Nothing asserts on wall-clock time;
docs/performance.md has reference runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
import msgspec
import nats
import nats.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import StorageType, StreamConfig

from benchmarks.handlers import FIBO_N, fibo, organism_yaml
from benchmarks.servers import (
    CpuMeter,
    NextraProcesses,
    Servers,
    cleanup,
    cpu_seconds,
    create_tenant,
    free_port,
    machine_lines,
    platform_env,
    prepare,
    servers_up,
    tree_cpu,
    version_of,
)
from nextra.cli.platform import Platform
from nextra.devstack.postgres import asyncpg_dsn
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import RecordedEvent
from nextra.events.runs import (
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunTriggered,
    StepCompleted,
)
from nextra.eventstore import headers as h
from nextra.eventstore.flowqueues import FlowQueues, queue_name
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import ALL_RUNS, runs_subject
from nextra.kernel.ids import new_id
from nextra.kernel.logging import configure_logging
from nextra.kernel.settings import load_settings

BENCH_DATABASE = f"nextra_bench_runs_{os.getpid()}"
RAW_STREAM = "NX_BENCH_RAW"
RAW_PREFIX = "nxbench.raw"
TIER = "enterprise"
CHAIN_GOAL = 0.4  # seconds for 40 steps
THROUGHPUT_GOAL = 500.0  # one-step runs/s
HALF_LOAD_P99_GOAL = 0.050  # seconds, trigger to first step
NEIGHBOUR_P99_GOAL = 0.250  # seconds, and under 2x B alone
POISON_P95_RISE = 1.2  # B's p95 with a poison flow beside it, over B's alone
# With payload_type named, the API does not load the flow a second time to
# find its entry listener's type (see _entry_type in nextra/api/runs.py).
ECHO_BODY = b'{"payload": {"text": "x"}, "payload_type": "Ping"}'


@dataclass
class Options:
    chain_steps: int
    chain_runs: int
    workers: list[int]
    flows: int
    tenants: int
    threads: int
    connections: int
    duration: float
    paced_seconds: float
    paced_connections: int
    flood_runs: int
    flood_concurrency: int
    flood_workers: int
    neighbour_rate: float
    neighbour_seconds: float
    poison_rate: float
    raw_seconds: float
    raw_in_flight: int
    drain_timeout: float
    log_level: str
    sections: set[str]
    reset_stream: bool


# ------------------------------------------------------------------------ figures


def percentile(samples: Sequence[float], fraction: float) -> float:
    """The nearest-rank percentile of ``samples`` (0 when there are none)."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(math.ceil(fraction * len(ordered)), 1)
    return ordered[min(rank, len(ordered)) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:,.1f} ms"


def spread(samples: Sequence[float]) -> str:
    """p50 / p99 / max of ``samples`` in milliseconds."""
    return (
        f"p50 {percentile(samples, 0.5) * 1000:,.1f} / "
        f"p99 {percentile(samples, 0.99) * 1000:,.1f} / "
        f"max {max(samples, default=0) * 1000:,.1f} ms (n={len(samples):,})"
    )


def rate(count: float, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


@dataclass
class Row:
    """One line of the final table: a figure, its raw baseline and their ratio."""

    section: str
    figure: str
    baseline: str = ""
    ratio: str = ""
    goal: str = ""
    verdict: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, row: Row) -> None:
        self.rows.append(row)

    def note(self, line: str) -> None:
        print(f"    {line}", flush=True)
        self.notes.append(line)

    def print_table(self) -> None:
        headers = Row("section", "nextra", "raw baseline", "ratio", "goal", "")
        rows = [headers, *self.rows]
        cells = [
            (r.section, r.figure, r.baseline, r.ratio, r.goal, r.verdict) for r in rows
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(6)]
        print()
        for number, row in enumerate(cells):
            print(
                "  ".join(
                    text.ljust(width) for text, width in zip(row, widths, strict=True)
                ).rstrip()
            )
            if number == 0:
                print("  ".join("-" * width for width in widths))


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


# ------------------------------------------------------------------ run events


@dataclass
class RunTimes:
    """What the events of one run say about its timing (epoch seconds)."""

    tenant_id: str
    flow_id: str
    triggered: float | None = None
    first_started: float | None = None
    first_recorded: float | None = None
    ended: float | None = None
    status: str = ""
    steps: list[tuple[float, float, float]] = field(default_factory=list)
    redelivered: int = 0

    @property
    def to_first_step(self) -> float | None:
        if self.triggered is None or self.first_started is None:
            return None
        return self.first_started - self.triggered


async def collect_runs(store: JetStreamEventStore, after: int) -> dict[str, RunTimes]:
    """Every run with an event after stream sequence ``after``, by run id.

    Reads the whole stream past ``after`` (``nx.run.>``, which the server
    serves without a per-subject scan) and sorts the events out here.
    """
    runs: dict[str, RunTimes] = {}
    async for recorded in store.read(after=after, subject=ALL_RUNS):
        run = recorded.aggregate
        times = runs.get(run.aggregate_id)
        if times is None:
            times = RunTimes(run.tenant_id, run.partition or "")
            runs[run.aggregate_id] = times
        stored = recorded.recorded_at.timestamp()
        event = recorded.event
        if isinstance(event, RunTriggered):
            times.triggered = stored
        elif isinstance(event, StepCompleted):
            started = event.started_at.timestamp()
            times.steps.append((started, event.duration_ms / 1000, stored))
            if times.first_started is None or started < times.first_started:
                times.first_started = started
                times.first_recorded = stored
            if event.attempt > 1:
                times.redelivered += 1
        elif isinstance(event, RunCompleted | RunFailed | RunCancelled):
            times.ended = stored
            times.status = event.type_name.removeprefix("run.")
    return runs


# ------------------------------------------------------------------ the platform


@dataclass
class Target:
    """A flow the benchmark triggers, with the key of its tenant."""

    tenant_id: str
    key: str
    flow_id: str

    @property
    def path(self) -> str:
        return f"/api/flows/{self.flow_id}/runs"

    @property
    def auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Bench:
    """What every section uses: the processes, connections and the report."""

    options: Options
    servers: Servers
    env: dict[str, str]
    procs: NextraProcesses
    port: int
    nc: NatsClient
    store: JetStreamEventStore
    http: httpx.AsyncClient
    cpu: CpuMeter
    report: Report
    scratch: Path
    wrk: str | None
    pg: asyncpg.Connection | None = None
    raw: RawFigures | None = None
    early_202: list[str] = field(default_factory=list)

    async def sessions(self) -> int:
        """Postgres sessions ever opened to the benchmark's database.

        Backends report with a delay of up to a second, so a caller waits that
        long after a stretch before reading the count again.
        """
        if self.pg is None:
            return 0
        await self.pg.execute("SELECT pg_stat_clear_snapshot()")
        value = await self.pg.fetchval(
            "SELECT sessions FROM pg_stat_database WHERE datname = current_database()"
        )
        return int(value or 0)

    async def sessions_since(self, before: int) -> str:
        await asyncio.sleep(1.1)
        return f"Postgres sessions opened meanwhile: {await self.sessions() - before:,}"

    async def last_sequence(self) -> int:
        return await self.store.last_sequence(ALL_RUNS)

    async def start_workers(self, count: int) -> None:
        """Have ``count`` workers running (starting or stopping the difference)."""
        running = self.procs.running("worker-")
        for name in running[count:]:
            self.procs.stop(name)
        starting = []
        for number in range(1, count + 1):
            name = f"worker-{number}"
            if self.procs.pid(name) is None:
                size = self.procs.log_size(name)
                self.procs.start(name, "worker")
                starting.append((name, size))
        for name, size in starting:
            await self.procs.wait_logged(name, "worker.started", after=size)

    def stop_workers(self) -> None:
        names = self.procs.running("worker-")
        if names:
            self.procs.stop(*names)

    async def create_flow(self, tenant_id: str, key: str, kind: str) -> Target:
        headers = {"Authorization": f"Bearer {key}"}
        body = {
            "name": f"bench {kind} {new_id()[-6:]}",
            "organism_yaml": organism_yaml(kind),
        }
        response = await self.http.post("/api/flows", json=body, headers=headers)
        _expect(response, 201, "create a flow")
        flow_id = response.json()["id"]
        response = await self.http.post(f"/api/flows/{flow_id}/start", headers=headers)
        _expect(response, 200, "start a flow")
        return Target(tenant_id, key, flow_id)

    async def trigger_and_wait(
        self,
        target: Target,
        payload: dict[str, Any],
        wait: float = 60,
        *,
        status: str = "completed",
    ) -> tuple[float, dict[str, Any]]:
        """Seconds from sending the trigger to the 200 that carries the run's end.

        Raises ``RuntimeError`` when the run ends other than ``status``.

        An early 202 (the API stopped waiting although the run had ended) is
        counted in ``early_202``; the run's end is then read from its events,
        and the time is taken when this process sees it there.
        """
        started = time.perf_counter()
        response = await self.http.post(
            f"{target.path}?wait={wait:g}",
            json={"payload": payload},
            headers=target.auth,
        )
        seconds = time.perf_counter() - started
        answered = time.time()
        body: dict[str, Any] = response.json() if response.content else {}
        if response.status_code == 202 and seconds < wait:
            subject = runs_subject(target.tenant_id, target.flow_id, body["run_id"])
            ended = await self.run_end(subject, timeout=wait)
            seconds = time.perf_counter() - started
            self.early_202.append(
                f"{body['run_id']}: 202 after {seconds * 1000:.1f} ms; its "
                f"{ended.event_type} was stored "
                f"{(answered - ended.recorded_at.timestamp()) * 1000:.1f} ms before "
                "the 202 left the API"
            )
            body["status"] = ended.event_type.removeprefix("run.")
        else:
            _expect(response, 200, "run a flow and wait for its end")
        if body.get("status") != status:
            message = f"the run did not end {status}: {body}"
            raise RuntimeError(message)
        return seconds, body

    async def run_end(self, subject: str, timeout: float) -> RecordedEvent:
        """The event that ended the run on ``subject``, once it is stored."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            async for recorded in self.store.read(subject=subject):
                if isinstance(recorded.event, RunCompleted | RunFailed | RunCancelled):
                    return recorded
            await asyncio.sleep(0.002)
        message = f"the run on {subject} did not end within {timeout:.0f}s"
        raise RuntimeError(message)

    async def wait_drained(self, targets: Sequence[Target], timeout: float) -> float:
        """Seconds until no flow's work consumer has events pending or in flight."""
        started = time.perf_counter()
        quiet = 0
        while time.perf_counter() - started < timeout:
            self.procs.check_alive()
            busy = 0
            for target in targets:
                name = queue_name(target.tenant_id, target.flow_id)
                reply = await self.nc.request(
                    f"$JS.API.CONSUMER.INFO.{RUNS_STREAM}.{name}", b"", timeout=5
                )
                info = msgspec.json.decode(reply.data)
                busy += int(info.get("num_pending", 0)) + int(
                    info.get("num_ack_pending", 0)
                )
            quiet = quiet + 1 if busy == 0 else 0
            if quiet >= 2:
                return time.perf_counter() - started
            await asyncio.sleep(0.1)
        message = f"the workers did not drain the flows' work within {timeout:.0f}s"
        raise RuntimeError(message)


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code != status:
        message = f"could not {what}: {response.status_code} {response.text[:400]}"
        raise RuntimeError(message)


async def wait_until_listed(bench: Bench, key: str, timeout: float = 60) -> None:
    """Until GET /api/flows answers 200 for ``key`` (the key is projected)."""
    deadline = time.perf_counter() + timeout
    last = "no answer"
    while time.perf_counter() < deadline:
        bench.procs.check_alive()
        with contextlib.suppress(httpx.HTTPError):
            response = await bench.http.get(
                "/api/flows", headers={"Authorization": f"Bearer {key}"}
            )
            if response.status_code == 200:
                return
            last = f"{response.status_code} {response.text[:200]}"
        await asyncio.sleep(0.1)
    message = f"GET /api/flows did not answer 200 within {timeout:.0f}s: {last}"
    raise RuntimeError(message)


# -------------------------------------------------------------- raw baselines


@dataclass
class RawFigures:
    publish_rtt: list[float]
    request_rtt: list[float]
    publish_rate: float
    in_flight: int
    payload_bytes: int
    health: WrkResult | None = None  # GET /health through the API, with wrk


async def raw_baselines(
    bench: Bench, payload: bytes, seconds: float, in_flight: int
) -> RawFigures:
    """js.publish of a run.triggered's bytes and headers, and core request/reply.

    The publishes go to a scratch stream configured like NX_RUNS (file storage,
    one replica, the same duplicate window), one fresh subject per message as a
    new run has, so that no projection or worker sees them.
    """
    js = bench.nc.jetstream()
    await js.add_stream(
        StreamConfig(
            name=RAW_STREAM,
            subjects=[f"{RAW_PREFIX}.>"],
            storage=StorageType.FILE,
            num_replicas=1,
            duplicate_window=120,
            allow_direct=True,
        )
    )
    tenant = new_id()
    flow = new_id()

    def headers(run_id: str) -> dict[str, str]:
        # What JetStreamEventStore.append sends with a trigger.
        return {
            h.EVENT_TYPE: "run.triggered",
            h.SCHEMA_VERSION: "1",
            h.EVENT_ID: new_id(),
            h.TENANT: tenant,
            h.ACTOR: "api-key:bench",
            h.COMMAND_ID: f"trigger:{run_id}",
            "Nats-Msg-Id": f"trigger:{run_id}",
            h.CORRELATION_ID: run_id,
            "Nats-Expected-Last-Subject-Sequence": "0",
        }

    async def publish() -> None:
        run_id = new_id()
        await js.publish(
            f"{RAW_PREFIX}.{tenant}.{flow}.{run_id}", payload, headers=headers(run_id)
        )

    try:
        for _ in range(50):  # warm up
            await publish()
        publish_rtt = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await publish()
            publish_rtt.append(time.perf_counter() - began)

        done = 0
        deadline = time.perf_counter() + seconds
        began = time.perf_counter()

        async def publisher() -> None:
            nonlocal done
            while time.perf_counter() < deadline:
                await publish()
                done += 1

        await asyncio.gather(*(publisher() for _ in range(in_flight)))
        publish_rate = rate(done, time.perf_counter() - began)
    finally:
        await js.delete_stream(RAW_STREAM)

    responder = await nats.connect(bench.servers.nats_url)
    try:
        inbox = f"nxbench.echo.{new_id()}"

        async def answer(msg: Any) -> None:
            await msg.respond(msg.data)

        await responder.subscribe(inbox, cb=answer)
        await responder.flush()
        await _until_answered(bench.nc, inbox)
        for _ in range(50):
            await bench.nc.request(inbox, payload, timeout=5)
        request_rtt = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            await bench.nc.request(inbox, payload, timeout=5)
            request_rtt.append(time.perf_counter() - began)
    finally:
        await responder.close()
    return RawFigures(publish_rtt, request_rtt, publish_rate, in_flight, len(payload))


async def _until_answered(nc: NatsClient, subject: str, timeout: float = 5) -> None:
    """Wait until a request to ``subject`` finds its responder.

    Once, against a server of our own, the first requests to a responder that
    had subscribed and flushed still came back "no responders".
    """
    deadline = time.perf_counter() + timeout
    while True:
        try:
            await nc.request(subject, b"", timeout=timeout)
        except nats.errors.NoRespondersError:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.05)
        else:
            return


async def section_raw(bench: Bench, payload: bytes, label: str) -> RawFigures:
    options = bench.options
    before = bench.cpu.snapshot()
    figures = await raw_baselines(
        bench, payload, options.raw_seconds, options.raw_in_flight
    )
    bench.report.note(
        f"raw ({label}): js.publish of {figures.payload_bytes} bytes + 9 headers, "
        f"one at a time: {spread(figures.publish_rtt)}"
    )
    bench.report.note(
        f"raw ({label}): js.publish, {figures.in_flight} in flight: "
        f"{figures.publish_rate:,.0f}/s"
    )
    bench.report.note(
        f"raw ({label}): core request/reply round trip: {spread(figures.request_rtt)}"
    )
    bench.report.note(f"raw ({label}): {bench.cpu.since(before)}")
    if bench.wrk is not None:
        before = bench.cpu.snapshot()
        seconds = max(options.raw_seconds, 2.0)
        figures.health = await run_wrk(bench, health_script(), "health", seconds)
        bench.report.note(f"raw ({label}): GET /health, {figures.health.line()}")
        bench.report.note(f"raw ({label}): GET /health: {bench.cpu.since(before)}")
    return figures


def merge_raw(first: RawFigures, second: RawFigures | None) -> RawFigures:
    """Both raw measurements as one: samples pooled, rates averaged."""
    if second is None:
        return first
    return RawFigures(
        first.publish_rtt + second.publish_rtt,
        first.request_rtt + second.request_rtt,
        (first.publish_rate + second.publish_rate) / 2,
        first.in_flight,
        first.payload_bytes,
        first.health,
    )


# ------------------------------------------------------ 40 sequential light steps


async def section_chain(bench: Bench, target: Target) -> None:
    options = bench.options
    steps = options.chain_steps
    fibo_seconds = min(timeit.repeat(lambda: fibo(FIBO_N), number=200, repeat=7)) / 200
    payload = {"n": 0, "steps": steps}
    await bench.trigger_and_wait(target, payload)  # warm up: consumer, handler
    totals: list[float] = []
    spans: list[float] = []
    run_ids: list[str] = []
    after = await bench.last_sequence()
    before = bench.cpu.snapshot()
    for _ in range(options.chain_runs):
        seconds, body = await bench.trigger_and_wait(target, payload)
        totals.append(seconds)
        run_ids.append(body["run_id"])
    cpu = bench.cpu.since(before)
    runs = await collect_runs(bench.store, after)

    handler: list[float] = []
    hand_off: list[float] = []
    commit: list[float] = []
    to_first: list[float] = []
    to_end: list[float] = []
    for run_id in run_ids:
        times = runs[run_id]
        if times.triggered is None or times.ended is None or len(times.steps) != steps:
            message = f"run {run_id} has {len(times.steps)} steps, not {steps}"
            raise RuntimeError(message)
        spans.append(times.ended - times.triggered)
        ordered = sorted(times.steps)
        previous = times.triggered
        for started, duration, stored in ordered:
            handler.append(duration)
            hand_off.append(started - previous)
            commit.append(stored - started - duration)
            previous = stored
        to_first.append(ordered[0][0] - times.triggered)
        to_end.append(times.ended - ordered[-1][2])

    median_total = statistics.median(totals)
    median_span = statistics.median(spans)
    overhead = (median_total - steps * fibo_seconds) / steps
    report = bench.report
    report.note(
        f"fibo({FIBO_N}) in this process: {fibo_seconds * 1e6:.1f} us; in the "
        f"worker, a step's handler (duration_ms): {spread(handler)}"
    )
    report.note(
        f"{steps} steps through the API, {options.chain_runs} runs one after another: "
        f"median {median_total:.3f}s, min {min(totals):.3f}s, max {max(totals):.3f}s"
    )
    report.note(
        f"from the events, run.triggered to run.completed: median "
        f"{median_span:.3f}s (min {min(spans):.3f}, max {max(spans):.3f}); the API's "
        f"share (HTTP, trigger command, the wait's read-back): "
        f"{(median_total - median_span) * 1000:.1f} ms"
    )
    report.note(
        "per step, from the events: hand-off (previous event stored -> handler "
        f"starts) {spread(hand_off)}"
    )
    report.note(f"per step: commit (handler done -> step stored) {spread(commit)}")
    report.note(
        f"trigger stored -> first handler {spread(to_first)}; last step stored -> "
        f"run.completed stored {spread(to_end)}"
    )
    report.note(cpu)

    raw = bench.raw
    assert raw is not None
    floor = percentile(raw.publish_rtt, 0.5)
    report.add(
        Row(
            f"1. {steps} sequential steps, API wall time (median of {options.chain_runs})",
            f"{median_total:.3f} s (min {min(totals):.3f}, max {max(totals):.3f})",
            f"{steps} x js.publish p50 = {steps * floor * 1000:.1f} ms",
            f"{median_total / (steps * floor):.1f}x",
            f"< {CHAIN_GOAL} s",
            verdict(median_total < CHAIN_GOAL),
        )
    )
    report.add(
        Row(
            f"   per-step overhead ((total - {steps} x fibo) / {steps})",
            ms(overhead),
            f"js.publish p50 {ms(floor)}",
            f"{overhead / floor:.1f}x",
        )
    )
    report.add(
        Row(
            "   trigger -> completed, from the events (median)",
            f"{median_span:.3f} s",
            f"{steps} x js.publish p50",
            f"{median_span / (steps * floor):.1f}x",
        )
    )


# ----------------------------------------------------------------------- wrk


_LUA_SETUP = """
local threads = {}
local count = 0
function setup(thread)
  thread:set("tid", count)
  count = count + 1
  table.insert(threads, thread)
end
"""

_LUA_POSTS = """
local targets = { TARGETS }
local body = BODY

function init(args)
  statuses = {}
  first = nil
  n = tid
  requests = {}
  for i, target in ipairs(targets) do
    requests[i] = wrk.format("POST", target[1], {
      ["Authorization"] = "Bearer " .. target[2],
      ["Content-Type"] = "application/json",
    }, body)
  end
end

function request()
  n = n + 1
  return requests[n % #requests + 1]
end
"""

_LUA_HEALTH = """
wrk.method = "GET"
wrk.path = "/health"
function init(args)
  statuses = {}
  first = nil
end
"""

_LUA_REPORT = """
function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
  if status >= 300 and first == nil then
    first = status .. " " .. string.sub(body or "", 1, 300)
  end
end

function done(summary, latency, requests)
  local totals = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      totals[status] = (totals[status] or 0) + n
    end
    local sample = thread:get("first")
    if sample then io.write("NX first ", (string.gsub(sample, "%s+", " ")), "\\n") end
  end
  local e = summary.errors
  io.write(string.format("NX summary %d %d %d %d %d %d %d\\n", summary.duration,
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout))
  io.write(string.format("NX latency %d %d %d %d\\n", latency:percentile(50),
    latency:percentile(90), latency:percentile(99), latency.max))
  for status, n in pairs(totals) do
    io.write(string.format("NX status %d %d\\n", status, n))
  end
end
"""


def wrk_script(targets: Sequence[Target], body: bytes) -> str:
    for text in (body.decode(), *(t.path + t.key for t in targets)):
        if "]==]" in text or "\n" in text:
            message = "a wrk target or body cannot go in a Lua long string"
            raise ValueError(message)
    listed = ", ".join(f"{{[==[{t.path}]==], [==[{t.key}]==]}}" for t in targets)
    posts = _LUA_POSTS.replace("TARGETS", listed)
    posts = posts.replace("BODY", f"[==[{body.decode()}]==]")
    return _LUA_SETUP + posts + _LUA_REPORT


def health_script() -> str:
    """A wrk script asking GET /health: the API process's bare HTTP path."""
    return _LUA_SETUP + _LUA_HEALTH + _LUA_REPORT


@dataclass
class WrkResult:
    seconds: float
    requests: int
    statuses: dict[int, int]
    errors: dict[str, int]
    latency_us: tuple[int, ...]  # p50, p90, p99, max
    first_failure: str
    started_at: float  # epoch seconds, just before wrk was started
    cpu_seconds: float

    @property
    def accepted(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def line(self) -> str:
        p50, p90, p99, worst = (value / 1000 for value in self.latency_us)
        statuses = ", ".join(f"{s}: {n:,}" for s, n in sorted(self.statuses.items()))
        errors = ", ".join(f"{k} {v}" for k, v in self.errors.items() if v)
        text = (
            f"wrk: {self.requests:,} requests in {self.seconds:.1f}s "
            f"({statuses or 'no statuses'}), accepted {rate(self.accepted, self.seconds):,.0f}/s; "
            f"response time p50 {p50:.1f} / p90 {p90:.1f} / p99 {p99:.1f} / max "
            f"{worst:.1f} ms; wrk's own CPU {self.cpu_seconds:.1f}s"
        )
        if errors:
            text += f"; socket errors: {errors}"
        if self.first_failure:
            text += f"; first failure: {self.first_failure}"
        return text


async def run_wrk(
    bench: Bench, script_text: str, name: str, seconds: float
) -> WrkResult:
    options = bench.options
    assert bench.wrk is not None
    script = bench.scratch / f"{name}.lua"
    script.write_text(script_text)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    started_at = time.time()
    process = await asyncio.create_subprocess_exec(
        bench.wrk,
        f"-t{options.threads}",
        f"-c{options.connections}",
        f"-d{seconds:g}s",
        "--timeout=10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{bench.port}",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), seconds + 60)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            process.kill()
        await process.wait()
        raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    used = (after.ru_utime + after.ru_stime) - (children.ru_utime + children.ru_stime)
    return _parse_wrk(output.decode(errors="replace"), started_at, used)


def _parse_wrk(text: str, started_at: float, used: float) -> WrkResult:
    summary: list[int] | None = None
    latency: tuple[int, ...] = ()
    statuses: dict[int, int] = {}
    first = ""
    for line in text.splitlines():
        if line.startswith("NX summary "):
            summary = [int(value) for value in line.split()[2:]]
        elif line.startswith("NX latency "):
            latency = tuple(int(value) for value in line.split()[2:])
        elif line.startswith("NX status "):
            status, count = line.split()[2:]
            statuses[int(status)] = int(count)
        elif line.startswith("NX first ") and not first:
            first = line.removeprefix("NX first ")
    if summary is None or len(latency) != 4:
        message = f"could not read wrk's output:\n{text}"
        raise RuntimeError(message)
    duration, requests, connect, read, write, _status, timeout = summary
    return WrkResult(
        seconds=duration / 1e6,
        requests=requests,
        statuses=statuses,
        errors={"connect": connect, "read": read, "write": write, "timeout": timeout},
        latency_us=latency,
        first_failure=first,
        started_at=started_at,
        cpu_seconds=used,
    )


# ------------------------------------------------------------ a paced client


@dataclass
class Sent:
    """One request of the paced client."""

    lag: float  # how late it went out against its schedule
    wall: float  # epoch seconds when it went out
    latency: float
    status: int
    run_id: str


@dataclass
class PacedResult:
    sent: list[Sent]
    seconds: float
    cpu_seconds: float
    connections: int
    failures: list[str]

    @property
    def accepted(self) -> list[Sent]:
        return [one for one in self.sent if 200 <= one.status < 300]

    def line(self, wanted: float) -> str:
        lags = [one.lag for one in self.sent]
        failed = len(self.sent) - len(self.accepted)
        return (
            f"paced client: {len(self.sent):,} requests in {self.seconds:.1f}s = "
            f"{rate(len(self.sent), self.seconds):,.1f}/s (asked {wanted:,.1f}/s), "
            f"{failed} not 2xx; response time {spread([s.latency for s in self.sent])}; "
            f"its own lateness against the schedule {spread(lags)}; its CPU "
            f"{self.cpu_seconds:.1f}s ({rate(self.cpu_seconds, self.seconds):.0%} of a "
            f"core), {self.connections} connections opened"
            + (f"; first failure: {self.failures[0]}" if self.failures else "")
        )


class PacedClient:
    """Sends POSTs at a fixed rate over keep-alive HTTP/1.1 connections.

    Open loop: request ``i`` is due at ``start + i / rate`` whatever happened to
    the ones before it, so a slow answer does not slow the arrivals (as wrk2
    would do, which Debian does not ship). It is a bare asyncio client, much
    cheaper per request than httpx; its lateness against the schedule is
    recorded with every request, and is its own limit.
    """

    def __init__(self, host: str, port: int, *, connections: int) -> None:
        self.host = host
        self.port = port
        self.connections = connections
        self._idle: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue()
        )
        self._opened = 0
        self._made = 0
        self.failures: list[str] = []

    def request(self, target: Target, body: bytes) -> bytes:
        head = (
            f"POST {target.path} HTTP/1.1\r\n"
            f"Host: {self.host}:{self.port}\r\n"
            f"Authorization: Bearer {target.key}\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._idle.empty() and self._opened < self.connections:
            self._opened += 1
            self._made += 1
            return await asyncio.open_connection(self.host, self.port)
        return await self._idle.get()

    async def _exchange(self, request: bytes, due: float, out: list[Sent]) -> None:
        reader, writer = await self._connection()
        sent_at = time.perf_counter()
        wall = time.time()
        try:
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            body = await reader.readexactly(length)
        except (OSError, ValueError, asyncio.IncompleteReadError) as error:
            # Counted as a failed request (status 0); the connection is dropped.
            writer.close()
            self._opened -= 1
            self.failures.append(f"{type(error).__name__}: {error}")
            out.append(Sent(sent_at - due, wall, time.perf_counter() - sent_at, 0, ""))
            return
        latency = time.perf_counter() - sent_at
        self._idle.put_nowait((reader, writer))
        run_id = ""
        if 200 <= status < 300:
            run_id = str(msgspec.json.decode(body).get("run_id", ""))
        out.append(Sent(sent_at - due, wall, latency, status, run_id))

    async def run(
        self, requests: Callable[[int], bytes], per_second: float, seconds: float
    ) -> PacedResult:
        total = max(int(per_second * seconds), 1)
        out: list[Sent] = []
        tasks: set[asyncio.Task[None]] = set()
        cpu = time.process_time()
        began = time.perf_counter()
        for number in range(total):
            due = began + number / per_second
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            task = asyncio.create_task(self._exchange(requests(number), due, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if tasks:
            await asyncio.wait(tasks, timeout=30)
        elapsed = time.perf_counter() - began
        used = time.process_time() - cpu
        while not self._idle.empty():
            _, writer = self._idle.get_nowait()
            writer.close()
        return PacedResult(out, elapsed, used, self._made, self.failures)


async def paced(
    bench: Bench, targets: Sequence[Target], per_second: float, seconds: float
) -> PacedResult:
    client = PacedClient(
        "127.0.0.1", bench.port, connections=bench.options.paced_connections
    )
    prepared = [client.request(target, ECHO_BODY) for target in targets]
    return await client.run(
        lambda number: prepared[number % len(prepared)], per_second, seconds
    )


# ------------------------------------------------------------- throughput


@dataclass
class Window:
    """What the runs started in a stretch of time did."""

    triggered: int
    completed_in_window: int
    completed: int
    failed: int
    to_first_step: list[float]
    to_end: list[float]
    redelivered: int
    last_end: float


def window(
    runs: dict[str, RunTimes],
    tenants: set[str],
    start: float,
    end: float,
    only: set[str] | None = None,
) -> Window:
    chosen = [
        times
        for run_id, times in runs.items()
        if times.tenant_id in tenants
        and times.triggered is not None
        and (only is None or run_id in only)
    ]
    started = [t for t in chosen if start <= (t.triggered or 0) <= end]
    return Window(
        triggered=len(started),
        completed_in_window=sum(
            1
            for t in chosen
            if t.status == "completed" and start <= (t.ended or 0) <= end
        ),
        completed=sum(1 for t in started if t.status == "completed"),
        failed=sum(1 for t in started if t.status and t.status != "completed"),
        to_first_step=[t.to_first_step for t in started if t.to_first_step is not None],
        to_end=[
            t.ended - t.triggered
            for t in started
            if t.ended is not None and t.triggered is not None
        ],
        redelivered=sum(t.redelivered for t in started),
        last_end=max((t.ended or 0 for t in chosen), default=0.0),
    )


async def section_throughput(
    bench: Bench, targets: list[Target], workers: int
) -> float:
    """wrk as fast as the API goes, then half that rate paced; the max rate."""
    options = bench.options
    report = bench.report
    raw = bench.raw
    assert raw is not None
    assert bench.wrk is not None
    label = f"{workers} worker{'s' if workers > 1 else ''}"
    tenants = {target.tenant_id for target in targets}

    after = await bench.last_sequence()
    sessions = await bench.sessions()
    before = bench.cpu.snapshot()
    result = await run_wrk(
        bench, wrk_script(targets, ECHO_BODY), f"wrk-{workers}", options.duration
    )
    cpu = bench.cpu.since(before)
    report.note(f"[{label}] {result.line()}")
    report.note(f"[{label}] during wrk: {cpu}")
    report.note(f"[{label}] during wrk: {await bench.sessions_since(sessions)}")
    drained = await bench.wait_drained(targets, options.drain_timeout)
    end = result.started_at + result.seconds
    runs = await collect_runs(bench.store, after)
    seen = window(runs, tenants, result.started_at, end)
    accepted = rate(result.accepted, result.seconds)
    completed = rate(seen.completed_in_window, result.seconds)
    backlog = seen.triggered - seen.completed_in_window
    overall = rate(seen.completed, seen.last_end - result.started_at)
    report.note(
        f"[{label}] runs triggered in the window {seen.triggered:,}, completed in "
        f"it {seen.completed_in_window:,} ({completed:,.0f}/s); backlog at its end "
        f"{backlog:,}, drained {drained:.1f}s after wrk; all {seen.completed:,} "
        f"completed by {seen.last_end - result.started_at:.1f}s ({overall:,.0f}/s "
        f"overall); not completed {seen.failed}; redelivered steps {seen.redelivered}"
    )
    report.note(
        f"[{label}] saturated: trigger -> first step {spread(seen.to_first_step)}; "
        f"trigger -> run.completed {spread(seen.to_end)}"
    )
    publish_p50 = percentile(raw.publish_rtt, 0.5)
    floor = "no wrk figure for GET /health"
    ratio = ""
    if raw.health is not None:
        health = rate(raw.health.accepted, raw.health.seconds)
        floor = f"GET /health via wrk: {health:,.0f}/s"
        ratio = f"{accepted / health:.2f}"
    report.add(
        Row(
            f"2. one-step runs via wrk, {label}: accepted triggers/s",
            f"{accepted:,.0f}/s",
            floor,
            ratio,
        )
    )
    report.add(
        Row(
            "   completed runs/s in the wrk window",
            f"{completed:,.0f}/s (backlog {backlog:,})",
            f"{raw.publish_rate:,.0f} publishes/s; a run is 3 appends",
            f"{completed / raw.publish_rate:.2f}",
            f">= {THROUGHPUT_GOAL:.0f}/s",
            verdict(completed >= THROUGHPUT_GOAL),
        )
    )
    report.add(
        Row(
            "   trigger -> first step, saturated, p50 / p99",
            f"{ms(percentile(seen.to_first_step, 0.5))} / "
            f"{ms(percentile(seen.to_first_step, 0.99))}",
            f"js.publish p50 {ms(publish_p50)}",
            f"{percentile(seen.to_first_step, 0.5) / publish_p50:.0f}x",
        )
    )

    # Half the rate the platform sustained (completions, or what the API took).
    top = min(accepted, completed) if completed > 0 else accepted
    half = max(top / 2, 1.0)
    after = await bench.last_sequence()
    sessions = await bench.sessions()
    before = bench.cpu.snapshot()
    result_paced = await paced(bench, targets, half, options.paced_seconds)
    cpu = bench.cpu.since(before)
    opened = await bench.sessions_since(sessions)
    await bench.wait_drained(targets, options.drain_timeout)
    runs = await collect_runs(bench.store, after)
    chosen = {one.run_id for one in result_paced.accepted}
    seen = window(runs, tenants, 0, math.inf, chosen)
    client_first = [
        times.first_started - one.wall
        for one in result_paced.accepted
        if (times := runs.get(one.run_id)) is not None
        and times.first_started is not None
    ]
    report.note(f"[{label}] half load: {result_paced.line(half)}")
    report.note(f"[{label}] half load: {cpu}")
    report.note(f"[{label}] half load: {opened}")
    report.note(
        f"[{label}] half load ({half:,.0f}/s): trigger -> first step "
        f"{spread(seen.to_first_step)}; client's send -> first step "
        f"{spread(client_first)}; trigger -> run.completed {spread(seen.to_end)}; "
        f"not completed {seen.failed}"
    )
    p99 = percentile(seen.to_first_step, 0.99)
    publish_p99 = percentile(raw.publish_rtt, 0.99)
    report.add(
        Row(
            f"   half load ({half:,.0f}/s), trigger -> first step p50 / p99",
            f"{ms(percentile(seen.to_first_step, 0.5))} / {ms(p99)}",
            f"js.publish p99 {ms(publish_p99)}",
            f"{p99 / publish_p99:.0f}x",
            f"p99 < {HALF_LOAD_P99_GOAL * 1000:.0f} ms",
            verdict(p99 < HALF_LOAD_P99_GOAL),
        )
    )
    return top


# ------------------------------------------------------------- noisy neighbour


@dataclass
class Probes:
    """Round trips timed every ``interval`` while a stretch runs (wall, seconds)."""

    direct_get: list[tuple[float, float]] = field(default_factory=list)
    request: list[tuple[float, float]] = field(default_factory=list)

    def line(self, until: float = math.inf) -> str:
        gets = [rtt for wall, rtt in self.direct_get if wall <= until]
        replies = [rtt for wall, rtt in self.request if wall <= until]
        return (
            f"probe, direct get of a run's last event on NX_RUNS {spread(gets)}; "
            f"core request/reply {spread(replies)}"
        )


@contextlib.asynccontextmanager
async def probing(
    bench: Bench, subject: str, interval: float = 0.02
) -> AsyncIterator[Probes]:
    """Time a direct get on ``subject`` and a core request/reply meanwhile.

    They show how long the server takes to answer a read of the runs stream,
    and a plain message, while the platform is busy.
    """
    probes = Probes()
    responder = await nats.connect(bench.servers.nats_url)
    inbox = f"nxbench.probe.{new_id()}"

    async def answer(msg: Any) -> None:
        await msg.respond(b"")

    await responder.subscribe(inbox, cb=answer)
    await responder.flush()
    await _until_answered(bench.nc, inbox)
    stopping = asyncio.Event()

    async def loop() -> None:
        while not stopping.is_set():
            began = time.perf_counter()
            await bench.store.last_sequence(subject)
            probes.direct_get.append((time.time(), time.perf_counter() - began))
            began = time.perf_counter()
            await bench.nc.request(inbox, b"", timeout=5)
            probes.request.append((time.time(), time.perf_counter() - began))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), interval)

    task = asyncio.create_task(loop())
    try:
        yield probes
    finally:
        stopping.set()
        await task
        await responder.close()


async def section_neighbour(bench: Bench, flood: Target, quiet: Target) -> None:
    options = bench.options
    report = bench.report
    workers = options.flood_workers
    rate_b = options.neighbour_rate
    await bench.start_workers(workers)

    # B alone, with the workers idle otherwise.
    after = await bench.last_sequence()
    last = await bench.trigger_and_wait(quiet, {"text": "probe"})
    probed = runs_subject(quiet.tenant_id, quiet.flow_id, last[1]["run_id"])
    before = bench.cpu.snapshot()
    async with probing(bench, probed) as probes_alone:
        alone = await paced(bench, [quiet], rate_b, options.neighbour_seconds)
    cpu = bench.cpu.since(before)
    await bench.wait_drained([quiet], options.drain_timeout)
    runs = await collect_runs(bench.store, after)
    chosen = {one.run_id for one in alone.accepted}
    seen_alone = window(runs, {quiet.tenant_id}, 0, math.inf, chosen)
    report.note(f"B alone: {alone.line(rate_b)}")
    report.note(f"B alone: {cpu}")
    report.note(f"B alone: {probes_alone.line()}")
    report.note(f"B alone: trigger -> first step {spread(seen_alone.to_first_step)}")

    # A's flood, queued while no worker runs.
    bench.stop_workers()
    settings = load_settings(environ=bench.env)
    platform = await Platform.connect(settings, name="nextra-bench-flood")
    try:
        commands = platform.run_commands(FlowQueues(platform.nc, platform.runs_store))
        after = await bench.last_sequence()
        queued = 0
        began = time.perf_counter()

        async def trigger_some() -> None:
            nonlocal queued
            while queued < options.flood_runs:
                queued += 1
                await commands.trigger(
                    flood.tenant_id,
                    flood.flow_id,
                    tier=TIER,
                    source="api-key:bench",
                    payload_type="Ping",
                    payload={"text": "flood"},
                )

        await asyncio.gather(
            *(trigger_some() for _ in range(options.flood_concurrency))
        )
        queue_seconds = time.perf_counter() - began
    finally:
        await platform.close()
    report.note(
        f"A: {options.flood_runs:,} runs queued through RunCommands.trigger in this "
        f"process ({options.flood_concurrency} in flight) in {queue_seconds:.1f}s = "
        f"{rate(options.flood_runs, queue_seconds):,.0f}/s, no worker running"
    )

    # The workers come back; B triggers at its modest rate while they drain A.
    started = time.perf_counter()
    await bench.start_workers(workers)
    report.note(f"{workers} workers started in {time.perf_counter() - started:.1f}s")
    sessions = await bench.sessions()
    before = bench.cpu.snapshot()
    async with probing(bench, probed) as probes:
        during = await paced(bench, [quiet], rate_b, options.neighbour_seconds)
    cpu = bench.cpu.since(before)
    opened = await bench.sessions_since(sessions)
    drained = await bench.wait_drained([flood, quiet], options.drain_timeout)
    runs = await collect_runs(bench.store, after)
    flood_runs = [t for t in runs.values() if t.tenant_id == flood.tenant_id]
    flood_end = max((t.ended or 0 for t in flood_runs), default=0.0)
    flood_first = min(
        (t.first_started for t in flood_runs if t.first_started), default=flood_end
    )
    done = sum(1 for t in flood_runs if t.status == "completed")
    chosen = {one.run_id for one in during.accepted if one.wall <= flood_end}
    seen = window(runs, {quiet.tenant_id}, 0, math.inf, chosen)
    report.note(f"B during the flood: {during.line(rate_b)}")
    report.note(f"during the flood: {cpu}")
    report.note(f"during the flood: {opened}")
    report.note(f"until A's last run ended: {probes.line(flood_end)}")
    report.note(
        f"A: {done:,} of {options.flood_runs:,} completed, the last "
        f"{flood_end - flood_first:.1f}s after the first step "
        f"({rate(done, flood_end - flood_first):,.0f} runs/s); all drained "
        f"{drained:.1f}s after B stopped"
    )
    report.note(
        f"B during the flood ({len(chosen)} of {len(during.accepted)} of its runs "
        f"were triggered before A's last run ended): trigger -> first step "
        f"{spread(seen.to_first_step)}"
    )

    p99_alone = percentile(seen_alone.to_first_step, 0.99)
    p99 = percentile(seen.to_first_step, 0.99)
    ratio = p99 / p99_alone if p99_alone > 0 else math.inf
    report.add(
        Row(
            f"3. noisy neighbour: B at {rate_b:g}/s, trigger -> first step "
            f"p50 / p99, during A's {options.flood_runs:,}-run flood",
            f"{ms(percentile(seen.to_first_step, 0.5))} / {ms(p99)}",
            f"B alone: {ms(percentile(seen_alone.to_first_step, 0.5))} / "
            f"{ms(p99_alone)}",
            f"{ratio:.1f}x",
            f"p99 < {NEIGHBOUR_P99_GOAL * 1000:.0f} ms and < 2x alone",
            verdict(p99 < NEIGHBOUR_P99_GOAL and ratio < 2),
        )
    )
    report.add(
        Row(
            f"   A's backlog drained by {workers} workers",
            f"{rate(done, flood_end - flood_first):,.0f} runs/s",
        )
    )


async def section_poison(
    bench: Bench, poisoned: Target, healthy: Target, quiet: Target
) -> None:
    """Anchors A10: a flow that fails on every run, beside a quiet tenant.

    A handler's failure is its step's outcome, so a poison run fails at its
    first delivery rather than after ``max_deliver``. B's latency is taken
    alone, beside a healthy flow at P's rate (what the load costs), and beside
    the poison flow (what failing costs on top).
    """
    options = bench.options
    report = bench.report
    workers = options.flood_workers
    rate_b, rate_p = options.neighbour_rate, options.poison_rate
    seconds = options.neighbour_seconds
    await bench.start_workers(workers)

    async def beside(other: Target | None, name: str) -> tuple[Window, Window | None]:
        after = await bench.last_sequence()
        before = bench.cpu.snapshot()
        if other is None:
            mine, theirs = await paced(bench, [quiet], rate_b, seconds), None
        else:
            mine, theirs = await asyncio.gather(
                paced(bench, [quiet], rate_b, seconds),
                paced(bench, [other], rate_p, seconds),
            )
        cpu = bench.cpu.since(before)
        await bench.wait_drained([quiet] + ([other] if other else []), 120)
        runs = await collect_runs(bench.store, after)
        chosen = {one.run_id for one in mine.accepted}
        seen = window(runs, {quiet.tenant_id}, 0, math.inf, chosen)
        label = "alone" if other is None else f"beside {name} at {rate_p:g}/s"
        report.note(f"5. B {label}: {mine.line(rate_b)}")
        report.note(f"5. B {label}: {cpu}")
        if other is None or theirs is None:
            return seen, None
        accepted = {one.run_id for one in theirs.accepted}
        return seen, window(runs, {other.tenant_id}, 0, math.inf, accepted)

    alone, _ = await beside(None, "nothing")
    loaded, _ = await beside(healthy, "a healthy flow")
    poisoned_b, failing = await beside(poisoned, "the poison flow")
    assert failing is not None
    report.note(
        f"5. P: {failing.failed:,} of {failing.triggered:,} runs failed, "
        f"{failing.completed:,} completed, {failing.redelivered} steps redelivered; "
        f"trigger -> run.failed {spread(failing.to_end)}"
    )

    def p95(seen: Window) -> float:
        return percentile(seen.to_first_step, 0.95)

    def p50_p95(seen: Window) -> str:
        return f"{ms(percentile(seen.to_first_step, 0.5))} / {ms(p95(seen))}"

    against_alone = p95(poisoned_b) / p95(alone) if p95(alone) > 0 else math.inf
    against_load = p95(poisoned_b) / p95(loaded) if p95(loaded) > 0 else math.inf
    goal = f"p95 rises < {(POISON_P95_RISE - 1) * 100:.0f}%"
    report.add(
        Row(
            f"5. poison flow at {rate_p:g}/s: B at {rate_b:g}/s, trigger -> first "
            "step p50 / p95",
            p50_p95(poisoned_b),
            f"B alone: {p50_p95(alone)}",
            f"{against_alone:.2f}x",
            goal,
            verdict(against_alone < POISON_P95_RISE),
        )
    )
    report.add(
        Row(
            "   the same, against B beside a healthy flow at that rate",
            p50_p95(poisoned_b),
            f"beside healthy: {p50_p95(loaded)}",
            f"{against_load:.2f}x",
            goal,
            verdict(against_load < POISON_P95_RISE),
        )
    )
    report.add(
        Row(
            "   P's runs: trigger -> run.failed p99",
            ms(percentile(failing.to_end, 0.99)),
            f"5 x ack wait = {5 * 30} s",
            "",
            "failed within 5 x ack wait",
            verdict(
                failing.failed == failing.triggered
                and percentile(failing.to_end, 0.99) < 5 * 30
            ),
        )
    )


# --------------------------------------------------------------------- the run


async def run(
    options: Options, servers: Servers, env: dict[str, str], scratch: Path
) -> None:
    logs = scratch / "logs"
    logs.mkdir()
    procs = NextraProcesses(env, logs)
    port = free_port()
    procs.start("projector", "projector")
    procs.start("api", "api", "--port", str(port))
    nc = await nats.connect(servers.nats_url)
    store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM)
    http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=90)
    dsn, pg_options = asyncpg_dsn(env["NEXTRA_DATABASE_URL"])
    pg = await asyncpg.connect(dsn, **pg_options)
    cpu = CpuMeter()
    for name in ("api", "projector", "worker-1", "worker-2", "worker-3", "worker-4"):
        cpu.add(name, lambda name=name: cpu_seconds(procs.pid(name)))
    if servers.nats_pid is not None:
        cpu.add("nats-server", lambda: cpu_seconds(servers.nats_pid))
    if servers.postgres_pid is not None:
        cpu.add("postgres", lambda: tree_cpu(servers.postgres_pid))
    cpu.add("this process", time.process_time)
    bench = Bench(
        options,
        servers,
        env,
        procs,
        port,
        nc,
        store,
        http,
        cpu,
        Report(),
        scratch,
        shutil.which("wrk"),
        pg,
    )
    try:
        await _run(bench)
    finally:
        await pg.close()
        await http.aclose()
        await nc.close()
        procs.stop()
        problems = procs.problems()
        if problems:
            print("\nWarnings and errors in the platform's logs (first 10):")
            for line in problems:
                print(f"  {line}")
        else:
            print("\nNo warnings or errors in the platform's logs.")


async def _run(bench: Bench) -> None:
    options = bench.options
    report = bench.report
    version = bench.nc.connected_server_version
    print("Nextra runs benchmark")
    for line in machine_lines():
        print(f"  {line}")
    print(
        f"  nats-server {version.major}.{version.minor}.{version.patch} "
        f"({bench.servers.nats_note})"
    )
    print(
        f"  nats-py {version_of('nats-py')}, litestar {version_of('litestar')}, "
        f"uvicorn {version_of('uvicorn')}, msgspec {version_of('msgspec')}, "
        f"asyncpg {version_of('asyncpg')}, httpx {version_of('httpx')}"
    )
    if bench.wrk is None:
        print(
            "  wrk is not installed: the wrk sections are skipped "
            "(apt-get install -y wrk)"
        )
    else:
        banner = subprocess.run(  # noqa: ASYNC221 - once, before any load
            [bench.wrk, "--version"], capture_output=True, text=True, check=False
        )
        print(f"  {(banner.stdout or banner.stderr).splitlines()[0][:60]}")
    print(
        f"  platform: nextra api (port {bench.port}), nextra projector, nextra "
        f"worker x1-2, NEXTRA_LOG_LEVEL={options.log_level}, worker concurrency "
        f"{bench.env.get('NEXTRA_WORKER_CONCURRENCY', 'default')}"
    )

    began = time.perf_counter()
    names = ["chain", "neighbour A", "neighbour B", "poison"] + [
        f"load {number}" for number in range(1, options.tenants + 1)
    ]
    created = await asyncio.gather(
        *(create_tenant(bench.env, f"Bench {name}", TIER) for name in names)
    )
    tenants = dict(zip(names, created, strict=True))
    for _, key in created:
        await wait_until_listed(bench, key)
    await bench.start_workers(1)
    chain = await bench.create_flow(*tenants["chain"], "chain")
    flood = await bench.create_flow(*tenants["neighbour A"], "echo")
    quiet = await bench.create_flow(*tenants["neighbour B"], "echo")
    poisoned = await bench.create_flow(*tenants["poison"], "fails")
    load: list[Target] = []
    for number in range(1, options.tenants + 1):
        tenant_id, key = tenants[f"load {number}"]
        for _ in range(options.flows):
            load.append(await bench.create_flow(tenant_id, key, "echo"))
    # One run of each flow: its work consumer exists and workers know it.
    for target in [flood, quiet, *load]:
        await bench.trigger_and_wait(target, {"text": "warm up"})
    await bench.trigger_and_wait(poisoned, {"text": "warm up"}, status="failed")
    _, body = await bench.trigger_and_wait(chain, {"n": 0, "steps": 2})
    subject = runs_subject(chain.tenant_id, chain.flow_id, body["run_id"])
    history = [recorded.event async for recorded in bench.store.read(subject=subject)]
    first = history[0]
    payload = REGISTRY.encode(first)
    print(
        f"  {len(names)} enterprise tenants, {3 + len(load)} flows, 1 worker up, "
        f"in {time.perf_counter() - began:.1f}s\n"
    )

    print("4. raw baselines ...", flush=True)
    bench.raw = await section_raw(bench, payload, "before")
    if "chain" in options.sections:
        print(f"1. {options.chain_steps} sequential steps ...", flush=True)
        await section_chain(bench, chain)
    top: dict[int, float] = {}
    if "throughput" in options.sections and bench.wrk is not None:
        for workers in options.workers:
            print(f"2. one-step runs, {workers} worker(s) ...", flush=True)
            await bench.start_workers(workers)
            top[workers] = await section_throughput(bench, load, workers)
    if "neighbour" in options.sections:
        print("3. noisy neighbour ...", flush=True)
        await section_neighbour(bench, flood, quiet)
    if "poison" in options.sections:
        print("5. poison flow ...", flush=True)
        await section_poison(bench, poisoned, flood, quiet)
    print("4. raw baselines again ...", flush=True)
    again = await section_raw(bench, payload, "after")
    raw = merge_raw(bench.raw, again)
    report.add(
        Row(
            "4. raw: js.publish one at a time, p50 / p99",
            f"{ms(percentile(raw.publish_rtt, 0.5))} / "
            f"{ms(percentile(raw.publish_rtt, 0.99))}",
            "(before and after, pooled)",
        )
    )
    report.add(
        Row(
            f"   raw: js.publish, {raw.in_flight} in flight",
            f"{raw.publish_rate:,.0f}/s",
            f"before {bench.raw.publish_rate:,.0f}, after {again.publish_rate:,.0f}",
        )
    )
    report.add(
        Row(
            "   raw: core NATS request/reply, p50 / p99",
            f"{ms(percentile(raw.request_rtt, 0.5))} / "
            f"{ms(percentile(raw.request_rtt, 0.99))}",
        )
    )
    if raw.health is not None:
        health = raw.health
        report.add(
            Row(
                f"   raw HTTP: GET /health on the API, wrk -c{options.connections}",
                f"{rate(health.accepted, health.seconds):,.0f}/s, p50 "
                f"{health.latency_us[0] / 1000:.1f} ms",
                "(before the load)",
            )
        )
    report.print_table()
    if bench.early_202:
        print(
            f"\n?wait answered 202 'running' for {len(bench.early_202)} run(s) that "
            "had already ended (timed here until their end was readable):"
        )
        for line in bench.early_202[:5]:
            print(f"  {line}")
    print(
        "\nratio = Nextra's figure / the raw figure beside it (for times, how many "
        "times slower than raw; for rates, the share of the raw rate). A one-step "
        "run appends 3 events: run.triggered, run.step_completed, run.completed."
    )
    if options.tenants * options.flows > 1:
        print(
            f"Section 2 spreads the triggers over {options.tenants * options.flows} "
            f"flows ({options.tenants} tenant(s) x {options.flows}); each flow lets "
            "at most 100 steps be in flight (max_concurrent_handlers: 100, the "
            "enterprise tier's cap)."
        )


# ----------------------------------------------------------------------- main


def _options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.runs",
        description="Runs through the real platform, next to raw NATS baselines.",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a short pass (~50 s): 3 chain runs, 4 s loads, a 1,000-run flood",
    )
    parser.add_argument(
        "--chain-steps", type=int, default=40, help="steps of the chain (default 40)"
    )
    parser.add_argument(
        "--chain-runs", type=int, help="sequential runs timed (default 10)"
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker counts for section 2, comma-separated (default 1,2)",
    )
    parser.add_argument(
        "--flows", type=int, default=4, help="echo flows per load tenant (default 4)"
    )
    parser.add_argument(
        "--tenants", type=int, default=1, help="load tenants in section 2 (default 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (2)")
    parser.add_argument(
        "--connections", type=int, default=16, help="wrk connections (16)"
    )
    parser.add_argument("--duration", type=float, help="seconds of wrk (default 12)")
    parser.add_argument(
        "--paced-seconds", type=float, help="seconds at half load (default 10)"
    )
    parser.add_argument(
        "--paced-connections",
        type=int,
        default=64,
        help="most connections the paced client opens (64)",
    )
    parser.add_argument(
        "--flood-runs", type=int, help="runs queued for tenant A (default 10000)"
    )
    parser.add_argument(
        "--flood-concurrency",
        type=int,
        default=64,
        help="triggers in flight while queueing A's runs (64)",
    )
    parser.add_argument(
        "--flood-workers", type=int, default=2, help="workers in section 3 (2)"
    )
    parser.add_argument(
        "--neighbour-rate", type=float, default=20.0, help="tenant B's runs/s (20)"
    )
    parser.add_argument(
        "--neighbour-seconds", type=float, help="seconds of B's load (default 15)"
    )
    parser.add_argument(
        "--raw-seconds", type=float, help="seconds per raw figure (default 2)"
    )
    parser.add_argument(
        "--raw-in-flight",
        type=int,
        default=64,
        help="js.publish calls in flight for the raw rate (64)",
    )
    parser.add_argument(
        "--drain-timeout",
        type=float,
        default=180.0,
        help="longest wait for the workers to finish a section's runs (180 s)",
    )
    parser.add_argument(
        "--poison-rate", type=float, default=50.0, help="poison runs/s (50)"
    )
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["debug", "info", "warning", "error"],
        help="NEXTRA_LOG_LEVEL of the platform's processes (default info)",
    )
    parser.add_argument(
        "--sections",
        default="chain,throughput,neighbour,poison",
        help="which of chain, throughput, neighbour, poison to run (raw always runs)",
    )
    parser.add_argument(
        "--reset-stream",
        action="store_true",
        help="with NEXTRA_NATS_URL: delete existing Nextra streams first",
    )
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: Any, full: Any, short: Any) -> Any:
        return value if value is not None else (short if quick else full)

    sections = {part.strip() for part in args.sections.split(",") if part.strip()}
    unknown = sections - {"chain", "throughput", "neighbour", "poison"}
    if unknown:
        parser.error(f"--sections: unknown {', '.join(sorted(unknown))}")
    try:
        workers = [int(part) for part in args.workers.split(",") if part.strip()]
    except ValueError:
        parser.error("--workers: comma-separated numbers, such as 1,2")
    if not workers or min(workers) < 1 or max(workers) > 4:
        parser.error("--workers: between 1 and 4 workers")
    if args.flood_workers < 1 or args.flood_workers > 4:
        parser.error("--flood-workers: between 1 and 4")
    return Options(
        chain_steps=args.chain_steps,
        chain_runs=pick(args.chain_runs, 10, 3),
        workers=workers,
        flows=args.flows,
        tenants=args.tenants,
        threads=args.threads,
        connections=args.connections,
        duration=pick(args.duration, 12.0, 4.0),
        paced_seconds=pick(args.paced_seconds, 10.0, 4.0),
        paced_connections=args.paced_connections,
        flood_runs=pick(args.flood_runs, 10_000, 1_000),
        flood_concurrency=args.flood_concurrency,
        flood_workers=args.flood_workers,
        neighbour_rate=args.neighbour_rate,
        neighbour_seconds=pick(args.neighbour_seconds, 15.0, 4.0),
        poison_rate=args.poison_rate,
        raw_seconds=pick(args.raw_seconds, 2.0, 0.5),
        raw_in_flight=args.raw_in_flight,
        drain_timeout=args.drain_timeout,
        log_level=args.log_level,
        sections=sections,
        reset_stream=args.reset_stream,
    )


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> None:
    options = _options(argv)
    configure_logging("warning")
    signal.signal(signal.SIGTERM, _interrupt)  # stop everything, as Ctrl-C does
    began = time.perf_counter()
    try:
        with (
            tempfile.TemporaryDirectory(prefix="nx-bench-runs-") as directory,
            servers_up(Path(directory)) as servers,
        ):
            scratch = Path(directory)
            env = platform_env(
                servers,
                "",
                NEXTRA_LOG_LEVEL=options.log_level,
                NEXTRA_TRUSTED_HANDLER_MODULES="benchmarks",
            )
            asyncio.run(
                prepare(
                    servers, BENCH_DATABASE, env, reset_streams=options.reset_stream
                )
            )
            try:
                asyncio.run(run(options, servers, env, scratch))
            except RuntimeError as error:
                print(f"\nbenchmark stopped: {error}", file=sys.stderr)
                raise SystemExit(1) from None
            finally:
                asyncio.run(cleanup(servers, BENCH_DATABASE))
    except KeyboardInterrupt:
        print(
            "\ninterrupted: the platform and the servers are stopped", file=sys.stderr
        )
        raise SystemExit(130) from None
    print(f"\nbenchmark took {time.perf_counter() - began:.0f}s")


if __name__ == "__main__":
    main()
