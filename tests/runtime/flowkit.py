"""Trusted handlers and payloads for the runtime's tests: the organism spec's cases.

Every handler records its invocation in ``CALLS`` under the run id, so a test
can check the order, the metadata and the payloads of its own run. Worker
processes have no ``CALLS`` a test can see: with ``NEXTRA_TEST_LEDGER`` set,
their handlers also append each invocation's step id and attempt to that file,
as an outside service keyed by idempotency keys would see them.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from nextra.sdk import HandlerMetadata, HandlerResponse, SystemError, payload

log = logging.getLogger(__name__)


@payload
class Msg:
    text: str


@payload
class Count:
    n: int


class Call:
    """One handler invocation as a test sees it."""

    def __init__(self, listener: str, value: Any, metadata: HandlerMetadata) -> None:
        self.listener = listener
        self.value = value
        self.from_id = metadata.from_id
        self.thread_id = metadata.thread_id
        self.is_self_call = metadata.is_self_call
        self.history = metadata.history
        self.step_id = metadata.step_id
        self.attempt = metadata.attempt

    def __repr__(self) -> str:
        return f"{self.listener}({self.value!r} from {self.from_id})"


CALLS: dict[str, list[Call]] = defaultdict(list)


def _record(listener: str, value: Any, metadata: HandlerMetadata) -> None:
    CALLS[metadata.run_id].append(Call(listener, value, metadata))
    ledger = os.environ.get("NEXTRA_TEST_LEDGER")
    if ledger:
        # One short write in append mode: lines from two workers do not mix.
        with Path(ledger).open("a") as out:
            out.write(f"{metadata.step_id} {metadata.attempt}\n")


# T01: a linear forward chain.
async def chain_a(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("a", message.text, metadata)
    return HandlerResponse(Msg(message.text + ">a"), to="b")


async def chain_b(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("b", message.text, metadata)
    return HandlerResponse(Msg(message.text + ">b"), to="c")


async def chain_c(message: Msg, metadata: HandlerMetadata) -> None:
    _record("c", message.text, metadata)


# T04: a forward to nobody.
async def to_nowhere(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("a", message.text, metadata)
    return HandlerResponse(message, to="nosuch")


# T08: an agent sending outside its peers.
async def to_c(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("a", message.text, metadata)
    return HandlerResponse(message, to="c")


async def hears_error(error: SystemError, metadata: HandlerMetadata) -> None:
    _record("a!", error.code, metadata)


async def sink(message: Msg, metadata: HandlerMetadata) -> None:
    _record("sink", message.text, metadata)


async def sink_c(message: Msg, metadata: HandlerMetadata) -> None:
    _record("c", message.text, metadata)


# T12 and T15: self-loops.
async def count_to_five(count: Count, metadata: HandlerMetadata) -> Any:
    _record("looper", count.n, metadata)
    if count.n < 5:
        return HandlerResponse(Count(count.n + 1), to="looper")
    return None


async def spin(count: Count, metadata: HandlerMetadata) -> HandlerResponse:
    _record("spin", count.n, metadata)
    return HandlerResponse(Count(count.n + 1), to="spin")


# Respond through a three-deep chain: a, b, c, b, a, then the trigger.
def _relay(name: str, callee: str | None) -> Any:
    async def relay(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
        _record(name, message.text, metadata)
        if callee is not None and metadata.from_id != callee:
            return HandlerResponse(Msg(message.text + f">{name}"), to=callee)
        return HandlerResponse.respond(Msg(message.text + f"<{name}"))

    relay.__name__ = f"relay_{name}"
    return relay


relay_a = _relay("a", "b")
relay_b = _relay("b", "c")
relay_c = _relay("c", None)


# Self-iteration, then respond: the stack-like unwinding of xml-pipeline.
async def caller(count: Count, metadata: HandlerMetadata) -> HandlerResponse:
    _record("caller", count.n, metadata)
    if metadata.from_id == "looper":
        return HandlerResponse.respond(count)
    return HandlerResponse(Count(0), to="looper")


async def looper(count: Count, metadata: HandlerMetadata) -> HandlerResponse:
    _record("looper", count.n, metadata)
    if count.n < 3:
        return HandlerResponse(Count(count.n + 1), to="looper")
    return HandlerResponse.respond(Count(count.n * 100))


# Late replies: root -> a, which fans out to b (fast) and c (slow).
async def root(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("root", message.text, metadata)
    if metadata.from_id == "a":
        return None
    return HandlerResponse(message, to="a")


async def fan_out_and_answer(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("a", message.text, metadata)
    if metadata.from_id in ("b", "c"):
        return HandlerResponse.respond(Msg("a heard " + message.text))
    return [HandlerResponse(message, to="b"), HandlerResponse(message, to="c")]


async def quick(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("b", message.text, metadata)
    return HandlerResponse.respond(Msg("b"))


async def slow(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("c", message.text, metadata)
    await asyncio.sleep(0.5)
    return HandlerResponse.respond(Msg("c"))


# Explicit fan-out, and its limit.
async def fan_out(message: Msg, metadata: HandlerMetadata) -> list[HandlerResponse]:
    _record("a", message.text, metadata)
    width = int(message.text)
    return [HandlerResponse(Msg(str(i)), to="b") for i in range(width)]


# Thread memory: a asks b, and on the answer looks at its thread.
async def ask_b(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("a", message.text, metadata)
    if metadata.from_id == "b":
        seen = [f"{m.sender}:{m.payload['text']}" for m in metadata.history]
        return HandlerResponse.respond(Msg(" | ".join(seen)))
    return HandlerResponse(Msg("question"), to="b")


async def answer(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("b", message.text, metadata)
    return HandlerResponse.respond(Msg("answer"))


# Limits and failures.
async def sleepy(message: Msg, metadata: HandlerMetadata) -> None:
    _record("sleepy", message.text, metadata)
    await asyncio.sleep(float(message.text))


async def broken(message: Msg, metadata: HandlerMetadata) -> None:
    _record("broken", message.text, metadata)
    log.warning("about to fail on %s", message.text)
    raise RuntimeError("the handler broke")


async def wrong_return(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("wrong", message.text, metadata)
    return "a plain string"


async def echo_verbatim(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("echo", message.text, metadata)
    log.info("echoing %s", message.text)
    return HandlerResponse.respond(message)


# Duplicate names: each entry takes the message, in declaration order.
async def first_of_two(message: Msg, metadata: HandlerMetadata) -> None:
    _record("dup#1", message.text, metadata)


async def second_of_two(message: Msg, metadata: HandlerMetadata) -> None:
    _record("dup#2", message.text, metadata)


async def to_dup(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("a", message.text, metadata)
    return HandlerResponse(message, to="DUP")


# A slow first step, then a forward to "sink"; or, for "sleep N", a long one.
async def sleep_or_forward(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("a", message.text, metadata)
    if message.text.startswith("sleep "):
        await asyncio.sleep(float(message.text.split()[1]))
        return None
    await asyncio.sleep(0.2)
    return HandlerResponse(message, to="sink")


# Light steps for load tests: respond at once.
async def respond_at_once(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("once", message.text, metadata)
    return HandlerResponse.respond(message)


async def slow_relay(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("c", message.text, metadata)
    await asyncio.sleep(0.3)
    return HandlerResponse.respond(Msg(message.text + "<c"))


# A step that decides the run (a timeout) while a sibling branch still runs.
async def fan_to_x_and_y(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("a", message.text, metadata)
    return [HandlerResponse(Msg("5"), to="x"), HandlerResponse(Msg("y"), to="y")]


async def late_forward(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("y", message.text, metadata)
    await asyncio.sleep(0.6)
    return HandlerResponse(message, to="sink")


# Long on its first attempt, quick when it runs again (after a worker stopped).
async def long_first_time(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("long", message.text, metadata)
    if metadata.attempt == 1:
        await asyncio.sleep(60)
    return HandlerResponse.respond(message)


# A fan-out to handlers that count how many of them run at once.
async def fan_out_counted(message: Msg, metadata: HandlerMetadata) -> Any:
    _record("a", message.text, metadata)
    return [HandlerResponse(Msg(message.text), to="c") for _ in range(5)]


# Text the store refuses, and a handler that cancels itself.
async def nul_reply(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("nul", message.text, metadata)
    return HandlerResponse.respond(Msg("before\x00after"))


async def nul_log(message: Msg, metadata: HandlerMetadata) -> HandlerResponse:
    _record("nul_log", message.text, metadata)
    log.warning("odd bytes: a\x00b")
    return HandlerResponse.respond(message)


async def cancels_itself(message: Msg, metadata: HandlerMetadata) -> None:
    _record("cancels", message.text, metadata)
    raise asyncio.CancelledError


async def crash_the_worker(message: Msg, metadata: HandlerMetadata) -> None:
    """A poison message: the worker process dies whenever it handles it."""
    _record("poison", message.text, metadata)
    if os.environ.get("NEXTRA_TEST_CRASHABLE") == "1":
        os._exit(17)
    raise RuntimeError("would have crashed a worker process")


RUNNING: dict[str, int] = defaultdict(int)
PEAK: dict[str, int] = defaultdict(int)


async def counted(message: Msg, metadata: HandlerMetadata) -> None:
    """Counts how many of its kind run at once, per test (``message.text``)."""
    _record("counted", message.text, metadata)
    RUNNING[message.text] += 1
    PEAK[message.text] = max(PEAK[message.text], RUNNING[message.text])
    try:
        await asyncio.sleep(0.1)
    finally:
        RUNNING[message.text] -= 1
