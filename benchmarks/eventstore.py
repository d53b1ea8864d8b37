"""Event store and projection throughput, each next to a raw baseline of the same run.

Run with ``python -m benchmarks.eventstore``. It starts its own nats-server
(``sync_interval: always``) and PostgreSQL under a temporary directory, or uses
``NEXTRA_NATS_URL`` / ``NEXTRA_DATABASE_URL`` when they are set, and prints:

1. single-event appends through ``JetStreamEventStore.append``, one at a time,
   next to raw nats-py ``js.publish`` of the same bytes and headers;
2. the same with a bounded number of appends in flight;
3. a ``ProjectionRunner`` catching up on the tenants projection, next to asyncpg
   ``copy_records_to_table`` of as many rows;
4. ``store.load`` of a 1,000-event aggregate, next to raw reads of its messages.

Nothing here asserts on wall-clock time; the figures are for people to read.
See docs/performance.md for the figures of a reference run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import msgspec
import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from nextra.devstack.nats import EmbeddedNats, find_nats_server
from nextra.devstack.postgres import EmbeddedPostgres, asyncpg_dsn, ensure_database
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import AggregateRef, CommandContext
from nextra.events.tenants import TenantCreated, TenantRenamed
from nextra.eventstore import headers as h
from nextra.eventstore.jetstream import JetStreamEventStore
from nextra.eventstore.subjects import aggregate_subject
from nextra.eventstore.topology import apply_streams, load_stream_definitions
from nextra.kernel.ids import new_id
from nextra.kernel.logging import configure_logging
from nextra.kernel.settings import project_root
from nextra.readmodels.database import create_engine, upgrade_database
from nextra.readmodels.projection import load_catalogue
from nextra.readmodels.runner import ProjectionRunner

STREAM = "NX_EVENTS"
BENCH_DATABASE = f"nextra_bench_{os.getpid()}"
APPEND_GOAL = 0.8
PROJECTION_GOAL = 15_000.0  # events/s


@dataclass
class Options:
    concurrency: int
    load_concurrency: int
    slices: int
    slice_seconds: float
    tenants: int
    history: int
    renames: int
    projection_runs: int
    projection_budget: float
    batch_size: int
    load_events: int
    load_runs: int
    reset_stream: bool


@dataclass
class Result:
    """One line of the table: a figure, its raw baseline and their ratio."""

    section: str
    nextra: str
    baseline_name: str
    baseline: str
    ratio: float
    goal: str
    verdict: str


@dataclass
class Servers:
    nats_url: str
    postgres_url: str
    nats_note: str
    nats_pid: int | None  # an embedded server's, to read its CPU time


def _cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of process ``pid`` so far (0 when unknown)."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --------------------------------------------------------------------------- utils


def _fresh_tenant() -> AggregateRef:
    tenant_id = new_id()
    return AggregateRef(tenant_id, "tenant", tenant_id)


async def _bounded(
    concurrency: int, jobs: Iterable[Callable[[], Awaitable[None]]]
) -> None:
    """Run ``jobs`` with at most ``concurrency`` of them in flight."""
    iterator = iter(jobs)

    async def worker() -> None:
        for job in iterator:
            await job()

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def _fmt_rate(value: float, unit: str) -> str:
    return f"{value:,.0f} {unit}"


def _verdict(ratio_or_value: float, goal: float) -> str:
    return "met" if ratio_or_value >= goal else "NOT met"


# ------------------------------------------------------------------------- appends

PAYLOAD_EVENT = TenantRenamed(name="Benchmark tenant, renamed")


class Chain:
    """One aggregate appended to over and over, each append on the version before.

    ``store_step`` goes through the event store; ``raw_step`` sends the same bytes
    and headers with nats-py's ``js.publish``. Each chain has its own aggregate,
    so concurrent chains never conflict.
    """

    def __init__(self, store: JetStreamEventStore, js: JetStreamContext) -> None:
        self.store = store
        self.js = js
        self.aggregate = _fresh_tenant()
        self.subject = aggregate_subject(self.aggregate)
        self.payload = REGISTRY.encode(PAYLOAD_EVENT)
        self.version = 0

    async def store_step(self) -> None:
        result = await self.store.append(
            self.aggregate,
            [PAYLOAD_EVENT],
            expected_version=self.version,
            context=CommandContext(),
        )
        self.version = result.last_sequence

    async def raw_step(self) -> None:
        # The headers JetStreamEventStore.append writes for one event.
        command_id = new_id()
        headers = {
            h.EVENT_TYPE: PAYLOAD_EVENT.type_name,
            h.SCHEMA_VERSION: str(PAYLOAD_EVENT.schema_version),
            h.EVENT_ID: new_id(),
            h.TENANT: self.aggregate.tenant_id,
            h.ACTOR: "system",
            h.COMMAND_ID: command_id,
            "Nats-Msg-Id": command_id,
            "Nats-Expected-Last-Subject-Sequence": str(self.version),
        }
        ack = await self.js.publish(self.subject, self.payload, headers=headers)
        self.version = ack.seq


async def _timed_chains(
    chains: list[Chain], raw: bool, seconds: float
) -> tuple[int, float]:
    """Appends done by ``chains`` (one in flight each) started within ``seconds``."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds

    async def drive(chain: Chain) -> None:
        nonlocal done
        step = chain.raw_step if raw else chain.store_step
        while time.perf_counter() < deadline:
            await step()
            done += 1

    await asyncio.gather(*(drive(chain) for chain in chains))
    return done, time.perf_counter() - started


async def bench_appends(
    store: JetStreamEventStore,
    js: JetStreamContext,
    *,
    concurrency: int,
    slices: int,
    seconds: float,
) -> tuple[float, float, list[str]]:
    """Appends/s through the store and through raw js.publish, in alternating slices.

    The order flips every pair (raw, store, store, raw, ...) so a drift of the
    disk's fsync latency over the section weighs on both sides alike.
    """
    store_chains = [Chain(store, js) for _ in range(concurrency)]
    raw_chains = [Chain(store, js) for _ in range(concurrency)]
    # Warm up both paths (subscriptions, caches, the first write of each subject).
    await _timed_chains(store_chains, False, 0.3)
    await _timed_chains(raw_chains, True, 0.3)

    totals = {False: [0, 0.0], True: [0, 0.0]}
    rates: dict[bool, list[str]] = {False: [], True: []}
    for number in range(slices):
        for raw in (True, False) if number % 2 == 0 else (False, True):
            done, elapsed = await _timed_chains(
                raw_chains if raw else store_chains, raw, seconds
            )
            totals[raw][0] += done
            totals[raw][1] += elapsed
            rates[raw].append(f"{_rate(done, elapsed):,.0f}")
    details = [
        f"store slices ({seconds:g}s each), appends/s: {', '.join(rates[False])}",
        f"raw slices   ({seconds:g}s each), publishes/s: {', '.join(rates[True])}",
    ]
    return _rate(*totals[False]), _rate(*totals[True]), details


# ---------------------------------------------------------------------- projection


async def load_tenant_events(
    store: JetStreamEventStore,
    *,
    tenants: int,
    history: int,
    renames: int,
    batch_concurrency: int,
    concurrency: int,
) -> tuple[int, float]:
    """Tenants with some history, then renamed round by round; events and seconds.

    Each tenant first gets one multi-event append (created, then ``history - 1``
    renames), so those events sit together in the stream; then ``renames`` rounds
    of single-event renames across all tenants, so those interleave and a batch of
    the projection touches as many rows as it holds events.
    """
    aggregates = [_fresh_tenant() for _ in range(tenants)]
    versions = dict.fromkeys(aggregates, 0)

    def first(aggregate: AggregateRef) -> Callable[[], Awaitable[None]]:
        async def append() -> None:
            name = f"Tenant {aggregate.tenant_id}"
            events = [TenantCreated(name=name, tier="free")] + [
                TenantRenamed(name=f"{name} v{index}") for index in range(1, history)
            ]
            result = await store.append(
                aggregate, events, expected_version=0, context=CommandContext()
            )
            versions[aggregate] = result.last_sequence

        return append

    def rename(aggregate: AggregateRef, number: int) -> Callable[[], Awaitable[None]]:
        async def append() -> None:
            event = TenantRenamed(name=f"Tenant {aggregate.tenant_id} r{number}")
            result = await store.append(
                aggregate,
                [event],
                expected_version=versions[aggregate],
                context=CommandContext(),
            )
            versions[aggregate] = result.last_sequence

        return append

    started = time.perf_counter()
    await _bounded(batch_concurrency, (first(aggregate) for aggregate in aggregates))
    for number in range(renames):
        await _bounded(concurrency, (rename(a, number) for a in aggregates))
    return tenants * (history + renames), time.perf_counter() - started


async def _checkpoint(pg: asyncpg.Connection, name: str) -> int:
    value = await pg.fetchval(
        "SELECT last_sequence FROM projection_checkpoints WHERE projection = $1", name
    )
    return int(value or 0)


async def catch_up_once(
    nc: NatsClient,
    store: JetStreamEventStore,
    database_url: str,
    pg: asyncpg.Connection,
    *,
    target: int,
    batch_size: int,
    budget: float,
) -> tuple[int, float, bool]:
    """Run the tenants projection from 0 until its checkpoint reaches ``target``."""
    await pg.execute("TRUNCATE tenants")
    await pg.execute("DELETE FROM projection_checkpoints")
    spec = next(
        spec
        for spec in load_catalogue(project_root() / "projections")
        if spec.name == "tenants"
    )
    engine = create_engine(database_url)
    runner = ProjectionRunner(
        spec, spec.create(), engine, store, nc, batch_size=batch_size
    )
    stopping = asyncio.Event()
    try:
        started = time.perf_counter()
        task = asyncio.create_task(runner.run(stopping))
        deadline = started + budget
        reached = 0
        while True:
            reached = await _checkpoint(pg, spec.name)
            if reached >= target or task.done() or time.perf_counter() > deadline:
                break
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        stopping.set()
        await asyncio.wait_for(task, 10)  # re-raises whatever stopped the runner
    finally:
        stopping.set()
        await engine.dispose()
    return runner.applied, elapsed, reached >= target


async def bench_copy(pg: asyncpg.Connection, rows: int, runs: int) -> float:
    """Rows/s of COPY into a scratch table shaped like ``tenants``; the median run."""
    await pg.execute("DROP TABLE IF EXISTS bench_tenants_copy")
    await pg.execute("CREATE TABLE bench_tenants_copy (LIKE tenants INCLUDING ALL)")
    now = datetime.now(UTC)
    records = [
        (new_id(), f"Tenant {index} renamed", "free", now, now, index)
        for index in range(1, rows + 1)
    ]
    columns = ["tenant_id", "name", "tier", "created_at", "updated_at", "version"]
    rates = []
    try:
        for _ in range(runs):
            await pg.execute("TRUNCATE bench_tenants_copy")
            started = time.perf_counter()
            async with pg.transaction():
                await pg.copy_records_to_table(
                    "bench_tenants_copy", records=records, columns=columns
                )
            rates.append(_rate(rows, time.perf_counter() - started))
    finally:
        await pg.execute("DROP TABLE IF EXISTS bench_tenants_copy")
    return statistics.median(rates)


# ---------------------------------------------------------------------------- load


async def raw_direct_get(nc: NatsClient, subject: str, expected: int) -> int:
    """The messages of ``subject`` with one batched direct get, undecoded."""
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    request = msgspec.json.encode(
        {"seq": 1, "batch": expected, "next_by_subj": subject}
    )
    received = 0
    try:
        await nc.publish(f"$JS.API.DIRECT.GET.{STREAM}", request, reply=inbox)
        while True:
            msg = await sub.next_msg(timeout=10)
            if msg.headers and msg.headers.get("Status"):
                break
            received += 1
    finally:
        await sub.unsubscribe()
    return received


async def raw_ordered_consumer(
    js: JetStreamContext, subject: str, expected: int
) -> int:
    """The messages of ``subject`` through an ordered push consumer, undecoded."""
    sub = await js.subscribe(
        subject, stream=STREAM, ordered_consumer=True, deliver_policy=DeliverPolicy.ALL
    )
    received = 0
    try:
        while received < expected:
            await sub.next_msg(timeout=10)
            received += 1
    finally:
        await sub.unsubscribe()
    return received


async def bench_load(
    nc: NatsClient,
    js: JetStreamContext,
    store: JetStreamEventStore,
    *,
    events: int,
    runs: int,
) -> tuple[float, float, float]:
    """Median seconds for store.load, raw direct get and raw ordered consumer."""
    aggregate = _fresh_tenant()
    history = [TenantCreated(name="Loaded tenant")] + [
        TenantRenamed(name=f"Loaded tenant {index}") for index in range(1, events)
    ]
    await store.append(aggregate, history, expected_version=0, context=CommandContext())
    subject = aggregate_subject(aggregate)

    async def via_store() -> int:
        return len(await store.load(aggregate))

    async def via_direct() -> int:
        return await raw_direct_get(nc, subject, events)

    async def via_consumer() -> int:
        return await raw_ordered_consumer(js, subject, events)

    ways = {"store": via_store, "direct": via_direct, "consumer": via_consumer}
    timings: dict[str, list[float]] = {name: [] for name in ways}
    for number in range(runs + 1):  # the first run of each warms up
        names = list(ways) if number % 2 == 0 else list(reversed(ways))
        for name in names:
            started = time.perf_counter()
            count = await ways[name]()
            seconds = time.perf_counter() - started
            if count != events:
                message = f"{name} read {count} of {events} events"
                raise RuntimeError(message)
            if number:
                timings[name].append(seconds)
    return (
        statistics.median(timings["store"]),
        statistics.median(timings["direct"]),
        statistics.median(timings["consumer"]),
    )


# ------------------------------------------------------------------------- servers


def _machine() -> list[str]:
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
    return [
        f"cpus: {os.cpu_count()} ({cpu}), memory: {memory}",
        f"python {platform.python_version()} on {platform.platform()}",
    ]


def _version_of(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "?"


async def _prepare_stream(nc: NatsClient, *, external: bool, reset: bool) -> bool:
    """A fresh, empty events stream; whether this run created it."""
    js = nc.jetstream()
    definitions = load_stream_definitions(project_root() / "streams")
    for definition in definitions:
        try:
            await js.stream_info(definition.name)
        except nats.js.errors.NotFoundError:
            continue
        if external and not reset:
            message = (
                f"stream {definition.name} already exists on NEXTRA_NATS_URL; the "
                "benchmark needs it empty. Point it at a scratch server, or pass "
                "--reset-stream to delete the stream and its events."
            )
            raise SystemExit(message)
        await js.delete_stream(definition.name)
    await apply_streams(js, definitions)
    return True


async def _prepare_database(postgres_url: str) -> str:
    url = await ensure_database(postgres_url, BENCH_DATABASE)
    await upgrade_database(url)
    return url


async def _drop_database(postgres_url: str) -> None:
    dsn, options = asyncpg_dsn(postgres_url)
    connection = await asyncpg.connect(dsn, **options)
    try:
        await connection.execute(
            f'DROP DATABASE IF EXISTS "{BENCH_DATABASE}" WITH (FORCE)'
        )
    finally:
        await connection.close()


# ---------------------------------------------------------------------------- main


async def run(servers: Servers, options: Options) -> None:
    external_nats = bool(os.environ.get("NEXTRA_NATS_URL"))

    async def quiet(_: Exception) -> None:
        return None

    nc = await nats.connect(servers.nats_url, error_cb=quiet)
    database_url = await _prepare_database(servers.postgres_url)
    dsn, pg_options = asyncpg_dsn(database_url)
    pg = await asyncpg.connect(dsn, **pg_options)
    created_stream = False
    try:
        created_stream = await _prepare_stream(
            nc, external=external_nats, reset=options.reset_stream
        )
        js = nc.jetstream()
        store = JetStreamEventStore(nc, REGISTRY, stream=STREAM)

        postgres_version = await pg.fetchval("SHOW server_version")
        fsync = await pg.fetchval("SHOW fsync")
        synchronous_commit = await pg.fetchval("SHOW synchronous_commit")
        print("Nextra event store benchmark")
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
            f"  nats-py {_version_of('nats-py')}, asyncpg {_version_of('asyncpg')}, "
            f"msgspec {_version_of('msgspec')}, SQLAlchemy {_version_of('SQLAlchemy')}"
        )
        print(
            f"  PostgreSQL {postgres_version} (fsync={fsync}, "
            f"synchronous_commit={synchronous_commit})"
        )
        print()
        results: list[Result] = []
        notes: list[str] = []

        # 3 runs first, on an empty stream, so the projection sees only its events.
        print("3. projection catch-up: loading tenant events ...", flush=True)
        loaded, load_seconds = await load_tenant_events(
            store,
            tenants=options.tenants,
            history=options.history,
            renames=options.renames,
            batch_concurrency=options.load_concurrency,
            concurrency=options.concurrency,
        )
        target = await store.last_sequence()
        notes.append(
            f"3. loaded {loaded:,} events ({options.tenants:,} tenants: one "
            f"{options.history}-event append each, then {options.renames} rounds "
            f"of single-event renames) in {load_seconds:.1f}s "
            f"= {_rate(loaded, load_seconds):,.0f} events/s; last sequence {target:,}"
        )
        catch_up_rates = []
        for number in range(options.projection_runs):
            client_cpu = time.process_time()
            server_cpu = _cpu_seconds(servers.nats_pid)
            applied, seconds, complete = await catch_up_once(
                nc,
                store,
                database_url,
                pg,
                target=target,
                batch_size=options.batch_size,
                budget=options.projection_budget,
            )
            client_cpu = time.process_time() - client_cpu
            server_cpu = _cpu_seconds(servers.nats_pid) - server_cpu
            rows = await pg.fetchval("SELECT count(*) FROM tenants")
            rate = _rate(applied, seconds)
            catch_up_rates.append(rate)
            cpu = f"CPU: this process {client_cpu:.2f}s"
            if servers.nats_pid is not None:
                cpu += f", nats-server {server_cpu:.2f}s"
            notes.append(
                f"3. catch-up run {number + 1}: {applied:,} events in {seconds:.2f}s "
                f"= {rate:,.0f} events/s, {rows:,} tenant rows ({cpu}, counted "
                "until the runner stopped)"
                + ("" if complete else " (INCOMPLETE: time budget ran out)")
            )
        projection_rate = statistics.median(catch_up_rates)
        copy_rate = await bench_copy(pg, loaded, runs=3)
        results.append(
            Result(
                "3. projection catch-up",
                _fmt_rate(projection_rate, "events/s"),
                "asyncpg COPY of as many rows",
                _fmt_rate(copy_rate, "rows/s"),
                _rate(projection_rate, copy_rate),
                f">= {PROJECTION_GOAL:,.0f} events/s",
                _verdict(projection_rate, PROJECTION_GOAL),
            )
        )

        print("1. appends one at a time ...", flush=True)
        store_rate, raw_rate, details = await bench_appends(
            store,
            js,
            concurrency=1,
            slices=options.slices,
            seconds=options.slice_seconds,
        )
        notes.extend(f"1. {line}" for line in details)
        ratio = _rate(store_rate, raw_rate)
        results.append(
            Result(
                "1. append, one at a time",
                _fmt_rate(store_rate, "appends/s"),
                "js.publish, one at a time",
                _fmt_rate(raw_rate, "publishes/s"),
                ratio,
                f"ratio >= {APPEND_GOAL}",
                _verdict(ratio, APPEND_GOAL),
            )
        )

        print(f"2. appends, {options.concurrency} in flight ...", flush=True)
        store_rate, raw_rate, details = await bench_appends(
            store,
            js,
            concurrency=options.concurrency,
            slices=options.slices,
            seconds=options.slice_seconds,
        )
        notes.extend(f"2. {line}" for line in details)
        ratio = _rate(store_rate, raw_rate)
        results.append(
            Result(
                f"2. append, {options.concurrency} in flight",
                _fmt_rate(store_rate, "appends/s"),
                f"js.publish, {options.concurrency} in flight",
                _fmt_rate(raw_rate, "publishes/s"),
                ratio,
                f"ratio >= {APPEND_GOAL}",
                _verdict(ratio, APPEND_GOAL),
            )
        )

        print(f"4. loading a {options.load_events:,}-event aggregate ...", flush=True)
        store_s, direct_s, consumer_s = await bench_load(
            nc, js, store, events=options.load_events, runs=options.load_runs
        )
        results.append(
            Result(
                f"4. store.load, {options.load_events:,} events",
                f"{store_s * 1000:.1f} ms",
                "batched direct get (nc)",
                f"{direct_s * 1000:.1f} ms",
                _rate(direct_s, store_s),
                "(none set)",
                "-",
            )
        )
        results.append(
            Result(
                "",
                "",
                "ordered consumer (js)",
                f"{consumer_s * 1000:.1f} ms",
                _rate(consumer_s, store_s),
                "",
                "",
            )
        )
        _print_table(results)
        print()
        print("Details")
        for line in notes:
            print(f"  {line}")
        print()
        print(
            "ratio = nextra throughput / baseline throughput (for 4: baseline time"
            " / store.load time). Sections ran in the order 3, 1, 2, 4: the"
            " projection first, on a stream holding only its own events."
        )
    finally:
        await pg.close()
        if created_stream and external_nats:
            with contextlib.suppress(Exception):
                await nc.jetstream().delete_stream(STREAM)
        await nc.close()
        await _drop_database(servers.postgres_url)


def _print_table(results: list[Result]) -> None:
    headers = ("section", "nextra", "baseline", "baseline figure", "ratio", "goal", "")
    rows = [
        (
            r.section,
            r.nextra,
            r.baseline_name,
            r.baseline,
            f"{r.ratio:.2f}",
            r.goal,
            r.verdict,
        )
        for r in results
    ]
    widths = [max(len(str(row[i])) for row in (headers, *rows)) for i in range(7)]
    print()
    print(
        "  ".join(
            text.ljust(width) for text, width in zip(headers, widths, strict=True)
        )
    )
    print("  ".join("-" * width for width in widths))
    for row in rows:
        print(
            "  ".join(
                text.ljust(width) for text, width in zip(row, widths, strict=True)
            )
        )


def _options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.eventstore")
    parser.add_argument("--concurrency", type=int, default=256)
    parser.add_argument(
        "--load-concurrency",
        type=int,
        default=32,
        help="multi-event appends in flight while loading (the server allows 50)",
    )
    parser.add_argument(
        "--slices", type=int, default=8, help="timed slices per side in sections 1, 2"
    )
    parser.add_argument("--slice-seconds", type=float, default=1.0)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument(
        "--history", type=int, default=10, help="events of each first, atomic append"
    )
    parser.add_argument(
        "--renames", type=int, default=10, help="rounds of single-event renames"
    )
    parser.add_argument("--projection-runs", type=int, default=3)
    parser.add_argument("--projection-budget", type=float, default=20.0)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--load-events", type=int, default=1000)
    parser.add_argument("--load-runs", type=int, default=9)
    parser.add_argument(
        "--reset-stream",
        action="store_true",
        help="with NEXTRA_NATS_URL: delete an existing events stream first",
    )
    args = parser.parse_args(argv)
    return Options(
        **{key.replace("-", "_"): value for key, value in vars(args).items()}
    )


def main(argv: list[str] | None = None) -> None:
    options = _options(argv)
    configure_logging("warning")
    began = time.perf_counter()
    with contextlib.ExitStack() as stack:
        scratch = Path(
            stack.enter_context(tempfile.TemporaryDirectory(prefix="nx-bench-"))
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
        if not postgres_url:
            postgres = EmbeddedPostgres(scratch / "pg" / "data")
            postgres.start()
            stack.callback(postgres.stop)
            postgres_url = postgres.url()
        started = time.perf_counter()
        asyncio.run(run(Servers(nats_url, postgres_url, note, nats_pid), options))
        measured = time.perf_counter() - started
    print(
        f"\nbenchmark took {time.perf_counter() - began:.0f}s "
        f"({measured:.0f}s with the servers up)"
    )
    sys.stdout.flush()


if __name__ == "__main__":
    main()
