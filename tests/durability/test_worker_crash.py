"""Workers killed with SIGKILL lose no step and commit no step twice (A4, A5)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path

from nats.aio.client import Client as NatsClient

from nextra.events.catalogue import REGISTRY
from nextra.events.runs import RunCompleted, RunFailed, StepCompleted, StepRetried
from nextra.eventstore.flowqueues import FlowQueues
from nextra.eventstore.jetstream import RUNS_STREAM, JetStreamEventStore
from nextra.eventstore.subjects import ALL_RUNS
from nextra.kernel.settings import project_root
from tests.runtime.conftest import Runtime, build_runs
from tests.runtime.test_semantics import listener, organism

ACK_WAIT = 2.0


def start_worker(
    nats_url: str, database_url: str, log: Path, **extra: str
) -> subprocess.Popen[bytes]:
    env = {
        **extra,
        **os.environ,
        "NEXTRA_NATS_URL": nats_url,
        "NEXTRA_DATABASE_URL": database_url,
        "NEXTRA_LOG_FORMAT": "json",
        "NEXTRA_TRUSTED_HANDLER_MODULES": "tests.",
        "NEXTRA_WORKER_ACK_WAIT": str(ACK_WAIT),
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "nextra", "worker"],
            cwd=project_root(),
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


async def runtime_for(nc: NatsClient, store: JetStreamEventStore) -> Runtime:
    runs_store = JetStreamEventStore(nc, REGISTRY, stream=RUNS_STREAM, timeout=2.0)
    queues = FlowQueues(nc, runs_store)
    return Runtime(store, runs_store, build_runs(nc, store, runs_store, queues))


TWO_STEPS = organism(
    listener("a", "relay_a"),
    listener("b", "relay_c"),
    extra="max_concurrent_handlers: 50\n",
)


async def test_sigkill_of_workers_during_200_runs_loses_and_repeats_nothing(
    nc: NatsClient,
    store: JetStreamEventStore,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    runtime = await runtime_for(nc, store)
    flow = await runtime.flow(TWO_STEPS.replace("relay_c", "slow_relay"), "enterprise")
    log = tmp_path / "workers.log"
    ledger = tmp_path / "ledger"
    workers = [
        start_worker(nats_url, database_url, log, NEXTRA_TEST_LEDGER=str(ledger))
        for _ in range(2)
    ]
    try:
        triggered = await asyncio.gather(
            *(runtime.trigger(flow, {"text": str(i)}) for i in range(200))
        )
        # Kill once the workers are well into the runs, with steps in hand:
        # first one worker, then, since the other may have held all of them,
        # the other one too.
        # Each run writes 5 events: the trigger, three steps and its end.
        while await runtime.runs_store.last_sequence(ALL_RUNS) < 450:
            await asyncio.sleep(0.01)
        for number in range(2):
            workers[number].kill()
            workers[number].wait()
            await asyncio.sleep(0.3)
            workers[number] = start_worker(
                nats_url, database_url, log, NEXTRA_TEST_LEDGER=str(ledger)
            )

        states = await asyncio.gather(
            *(runtime.ended(flow, t.run_id, timeout=90) for t in triggered)
        )
    finally:
        for worker in workers:
            stop(worker)

    assert [state.status for state in states] == ["completed"] * 200
    # What handlers did outside, keyed by step id: every attempt of a step has
    # its id, and an outside service that keeps one effect per id has one per
    # committed step.
    tried: dict[str, set[int]] = defaultdict(set)
    for line in ledger.read_text().splitlines():
        step_id, attempt = line.split()
        tried[step_id].add(int(attempt))
    committed: dict[str, int] = {}
    attempts = 0
    for number, run in enumerate(triggered):
        events = await runtime.events(flow, run.run_id)
        steps = Counter(
            (e.event.message_id, e.event.entry)
            for e in events
            if isinstance(e.event, StepCompleted)
        )
        # a, b, then a again with b's answer: each step committed exactly once.
        assert sorted(steps.values()) == [1, 1, 1], steps
        for e in events:
            if isinstance(e.event, StepCompleted):
                entry = 0 if e.event.listener == "a" else 1
                step_id = f"{run.run_id}:{e.event.message_id}:{entry}"
                committed[step_id] = e.event.attempt
                attempts += e.event.attempt - 1
        ending = events[-1].event
        assert isinstance(ending, RunCompleted)
        assert ending.output == {"text": f"{number}>a<c<a"}
    # The kill landed while steps were in hand: those were delivered again.
    assert attempts > 0
    assert set(tried) == set(committed)
    # The committed outcome is the step's last attempt: none ran after it.
    assert {step: max(tried[step]) for step in tried} == committed


async def test_triggers_wait_while_no_worker_runs_then_all_complete(
    nc: NatsClient,
    store: JetStreamEventStore,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    runtime = await runtime_for(nc, store)
    flow = await runtime.flow(TWO_STEPS, "enterprise")

    # A4: every pump is down; triggers are still accepted and stored.
    triggered = await asyncio.gather(
        *(runtime.trigger(flow, {"text": str(i)}) for i in range(200))
    )
    await asyncio.sleep(1.0)
    worker = start_worker(nats_url, database_url, tmp_path / "worker.log")
    try:
        states = await asyncio.gather(
            *(runtime.ended(flow, t.run_id, timeout=90) for t in triggered)
        )
    finally:
        stop(worker)

    assert [state.status for state in states] == ["completed"] * 200


async def test_poison_step_fails_its_run_and_spares_other_tenants(
    nc: NatsClient,
    store: JetStreamEventStore,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
) -> None:
    runtime = await runtime_for(nc, store)
    poisoned = await runtime.flow(organism(listener("p", "crash_the_worker")), "pro")
    healthy = await runtime.flow(TWO_STEPS, "pro")
    log = tmp_path / "workers.log"
    crashable = {"NEXTRA_TEST_CRASHABLE": "1"}
    workers = [start_worker(nats_url, database_url, log, **crashable)]

    async def supervise() -> None:
        # Like a process manager: a worker that died is started again.
        while True:
            for number, worker in enumerate(workers):
                if worker.poll() is not None:
                    workers[number] = start_worker(
                        nats_url, database_url, log, **crashable
                    )
            await asyncio.sleep(0.1)

    supervisor = asyncio.create_task(supervise())
    try:
        poison = await runtime.trigger(poisoned, {"text": "x"})
        others = [await runtime.trigger(healthy, {"text": str(i)}) for i in range(20)]
        poison_state = await runtime.ended(poisoned, poison.run_id, timeout=60)
        other_states = [
            await runtime.ended(healthy, run.run_id, timeout=60) for run in others
        ]
    finally:
        supervisor.cancel()
        for worker in workers:
            stop(worker)

    assert poison_state.status == "failed"
    events = await runtime.events(poisoned, poison.run_id)
    ending = events[-1].event
    assert isinstance(ending, RunFailed)
    assert ending.reason == "poison"
    # Run again alone twice, each time killing its worker, then given up.
    retries = [e.event for e in events if isinstance(e.event, StepRetried)]
    assert len(retries) == 2
    # The steps that shared a worker with it were lost with it, but ran again
    # and completed: the poison took down no run but its own.
    assert [state.status for state in other_states] == ["completed"] * 20
