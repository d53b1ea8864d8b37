"""What work consumers cost the server as flows grow, next to the same server without them.

Run with ``python -m benchmarks.consumers``. It starts its own nats-server
(``sync_interval: always``), or uses ``NEXTRA_NATS_URL``, applies
``streams/runs.toml`` to an empty ``NX_RUNS`` and, for each count of flows
(``--flows``, default 0, 1,000, 5,000 and 10,000), gives every flow its work
consumer through ``FlowQueues.ensure``, as the first trigger of a flow does.
Then it prints:

1. how fast the consumers were made;
2. one worker's backlog scan (``FlowQueues.backlogs``), in time and in the
   server's CPU, the scan every worker repeats to catch missed wake-ups;
3. ``js.publish`` of a run event, one at a time, p50 and p99: against the row
   with no consumers it shows what the consumers cost each append;
4. the server's resident memory;
5. once, a delivery and its acknowledgement through a nats-py pull consumer, in
   the server's CPU and this process's: what each delivery of a run event costs
   before any of Nextra's work.

Nothing here asserts on wall-clock time; docs/performance.md ("Work consumers")
has the figures of a reference run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import nats
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.js.api import AckPolicy, ConsumerConfig

from benchmarks.servers import cpu_seconds, machine_lines
from nextra.devstack.nats import EmbeddedNats, find_nats_server
from nextra.events.catalogue import REGISTRY
from nextra.eventstore.flowqueues import FlowQueues, QueueSettings
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import runs_subject
from nextra.eventstore.topology import apply_streams, load_stream_definitions
from nextra.kernel.settings import project_root

_TENANTS = 50
_PAYLOAD = b"x" * 300
_PUBLISHES = 500
_SCANS = 3


@dataclass
class Row:
    flows: int
    made_per_second: float
    scan_ms: float
    scan_server_cpu_ms: float
    publish_p50_ms: float
    publish_p99_ms: float
    server_rss_mib: float


def _rss_mib(pid: int | None) -> float:
    if pid is None:
        return 0.0
    with contextlib.suppress(OSError, ValueError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _flow(number: int) -> tuple[str, str]:
    return f"t{number % _TENANTS}", f"f{number}"


async def _make_consumers(queues: FlowQueues, start: int, stop: int) -> None:
    settings = QueueSettings()
    for first in range(start, stop, 100):
        batch = range(first, min(stop, first + 100))
        await asyncio.gather(*(queues.ensure(*_flow(n), settings) for n in batch))


async def _publish_latencies(nc: NatsClient, flows: int) -> list[float]:
    js = nc.jetstream()
    latencies = []
    for number in range(_PUBLISHES):
        tenant_id, flow_id = _flow(number % max(flows, 1))
        subject = runs_subject(tenant_id, flow_id, f"r{number}")
        began = time.perf_counter()
        await js.publish(subject, _PAYLOAD)
        latencies.append((time.perf_counter() - began) * 1000)
    return sorted(latencies)


async def _scan(queues: FlowQueues, pid: int | None) -> tuple[float, float]:
    """The median wall time and mean server CPU of a backlog scan, in ms."""
    walls = []
    cpu_before = cpu_seconds(pid)
    for _ in range(_SCANS):
        began = time.perf_counter()
        await queues.backlogs()
        walls.append((time.perf_counter() - began) * 1000)
    cpu = (cpu_seconds(pid) - cpu_before) / _SCANS * 1000
    return statistics.median(walls), cpu


async def _delivery_cost(nc: NatsClient, pid: int | None, count: int) -> str:
    """Server and client CPU of one delivery and its acknowledgement."""
    js = nc.jetstream()
    subject = runs_subject("bench", "deliveries", "run")
    pending = [await js.publish_async(subject, _PAYLOAD) for _ in range(count)]
    await asyncio.gather(*pending)
    await js.add_consumer(
        RUNS_STREAM,
        ConsumerConfig(
            durable_name="bench_deliveries",
            filter_subject=runs_subject("bench", "deliveries", "*"),
            ack_policy=AckPolicy.EXPLICIT,
            max_ack_pending=1000,
        ),
    )
    pull = await js.pull_subscribe_bind("bench_deliveries", RUNS_STREAM)
    server_before, client_before = cpu_seconds(pid), time.process_time()
    began = time.perf_counter()
    delivered = 0
    while delivered < count:
        messages = await pull.fetch(16, timeout=5)
        for message in messages:
            await message.ack()
        delivered += len(messages)
    wall = time.perf_counter() - began
    server = (cpu_seconds(pid) - server_before) / count * 1e6
    client = (time.process_time() - client_before) / count * 1e6
    await pull.unsubscribe()
    await js.delete_consumer(RUNS_STREAM, "bench_deliveries")
    return (
        f"{count / wall:,.0f} deliveries/s; per delivery and ack: server "
        f"{server:.0f} us of CPU, nats-py client {client:.0f} us"
    )


async def run(nats_url: str, pid: int | None, counts: list[int], reset: bool) -> None:
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        definitions = [
            d
            for d in load_stream_definitions(project_root() / "streams")
            if d.name == RUNS_STREAM
        ]
        with contextlib.suppress(nats.js.errors.NotFoundError):
            await js.stream_info(RUNS_STREAM)
            if pid is None and not reset:
                message = (
                    f"{RUNS_STREAM} exists on NEXTRA_NATS_URL; pass --reset-stream "
                    "to delete it and its events, or use a scratch server"
                )
                raise SystemExit(message)
            await js.delete_stream(RUNS_STREAM)
        await apply_streams(js, definitions)
        limit = definitions[0].max_consumers
        store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM)
        queues = FlowQueues(nc, store)
        # First, so that its consumer is not one too many for the last count.
        deliveries = await _delivery_cost(nc, pid, 20_000)

        rows = []
        made = 0
        for count in sorted(counts):
            began = time.perf_counter()
            await _make_consumers(queues, made, count)
            took = time.perf_counter() - began
            rate = (count - made) / took if count > made else 0.0
            made = count
            scan_ms, scan_cpu = await _scan(queues, pid)
            latencies = await _publish_latencies(nc, count)
            rows.append(
                Row(
                    flows=count,
                    made_per_second=rate,
                    scan_ms=scan_ms,
                    scan_server_cpu_ms=scan_cpu,
                    publish_p50_ms=latencies[len(latencies) // 2],
                    publish_p99_ms=latencies[int(len(latencies) * 0.99)],
                    server_rss_mib=_rss_mib(pid),
                )
            )
            print(f"  {count:,} work consumers measured", flush=True)
    finally:
        await nc.close()

    _print(rows, limit, deliveries)


def _print(rows: list[Row], limit: int | None, deliveries: str) -> None:
    print()
    print(f"NX_RUNS max_consumers: {limit}")
    header = (
        "| work consumers | made/s | backlog scan ms | scan server CPU ms "
        "| publish p50 / p99 ms | server RSS MiB |"
    )
    print(header)
    print("|" + "---|" * 6)
    base = rows[0] if rows and rows[0].flows == 0 else None
    for row in rows:
        ratio = ""
        if base is not None and row is not base and base.publish_p99_ms > 0:
            ratio = f" ({row.publish_p99_ms / base.publish_p99_ms:.2f}x of none)"
        print(
            f"| {row.flows:,} | {row.made_per_second:,.0f} | {row.scan_ms:.0f} "
            f"| {row.scan_server_cpu_ms:.0f} "
            f"| {row.publish_p50_ms:.2f} / {row.publish_p99_ms:.2f}{ratio} "
            f"| {row.server_rss_mib:.0f} |"
        )
    print()
    print(f"raw delivery: {deliveries}")
    for line in machine_lines():
        print(line)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.consumers")
    parser.add_argument(
        "--flows",
        default="0,1000,5000,10000",
        help="comma-separated counts of flows with a work consumer",
    )
    parser.add_argument(
        "--reset-stream",
        action="store_true",
        help="delete an existing NX_RUNS on NEXTRA_NATS_URL first",
    )
    options = parser.parse_args(argv)
    counts = [int(value) for value in options.flows.split(",") if value]

    nats_url = os.environ.get("NEXTRA_NATS_URL")
    if nats_url:
        print("NATS: NEXTRA_NATS_URL, with its own settings (server CPU not read)")
        asyncio.run(run(nats_url, None, counts, options.reset_stream))
        return
    with tempfile.TemporaryDirectory(prefix="nextra-bench-consumers-") as scratch:
        server = EmbeddedNats(Path(scratch) / "nats")
        server.start()
        try:
            print(f"NATS: embedded {find_nats_server()}, sync_interval: always")
            pid = server.process.pid if server.process else None
            asyncio.run(run(server.url, pid, counts, reset=True))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
