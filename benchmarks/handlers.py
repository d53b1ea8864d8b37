"""Trusted Python handlers that ``benchmarks.runs`` puts in its flows.

Workers import this module by its dotted path, so the benchmark starts them with
``NEXTRA_TRUSTED_HANDLER_MODULES=benchmarks`` and with the checkout as their
working directory. The handlers do almost nothing, on purpose: what a run costs
beyond them is the runtime's overhead.
"""

from __future__ import annotations

from typing import Any

from nextra.sdk import HandlerMetadata, HandlerResponse, payload

__all__ = (
    "FIBO_N",
    "Hop",
    "Ping",
    "echo",
    "fails",
    "fibo",
    "fibo_hop",
    "organism_yaml",
)

FIBO_N = 10
"""The Fibonacci number each light step computes, as in Windmill's harness."""


@payload
class Hop:
    """One step of the sequential chain: steps done before it, of ``steps`` in all."""

    n: int
    steps: int
    value: int = 0


@payload
class Ping:
    text: str


def fibo(n: int) -> int:
    """The naive recursive Fibonacci number: a fixed, small amount of CPU."""
    return n if n < 2 else fibo(n - 1) + fibo(n - 2)


async def fibo_hop(hop: Hop, metadata: HandlerMetadata) -> Any:
    """Compute fibo(10), then hand the next step to itself until ``steps`` are done.

    The last step returns nothing, which ends the run: a respond from the end of
    a self-forwarding chain would unwind through every step of it again.
    """
    value = fibo(FIBO_N)
    if hop.n + 1 >= hop.steps:
        return None
    return HandlerResponse(Hop(n=hop.n + 1, steps=hop.steps, value=value), to="hop")


async def echo(ping: Ping, metadata: HandlerMetadata) -> HandlerResponse:
    """Answer the trigger at once: a run of exactly one step."""
    return HandlerResponse.respond(Ping(text=ping.text))


async def fails(ping: Ping, metadata: HandlerMetadata) -> None:
    """Fail on every run: the poison flow of anchors A10."""
    message = f"this flow fails on every run ({ping.text})"
    raise RuntimeError(message)


def organism_yaml(kind: str, *, in_flight: int = 100) -> str:
    """The organism of a benchmark flow: ``chain`` (``hop`` forwarding to itself,
    as many steps as the trigger's ``Hop.steps``), ``echo`` (one step) or
    ``fails`` (one step that always raises).

    ``in_flight`` becomes ``max_concurrent_handlers``, the flow's own cap on
    steps in flight (the tier's cap applies on top).
    """
    module = __name__
    if kind == "chain":
        listener = (
            "  - name: hop\n"
            "    description: Computes fibo(10) and forwards to itself\n"
            f"    handler: {module}.fibo_hop\n"
            f"    payload_class: {module}.Hop\n"
        )
    elif kind == "echo":
        listener = (
            "  - name: echo\n"
            "    description: Answers the trigger at once\n"
            f"    handler: {module}.echo\n"
            f"    payload_class: {module}.Ping\n"
        )
    elif kind == "fails":
        listener = (
            "  - name: fails\n"
            "    description: Fails on every run\n"
            f"    handler: {module}.fails\n"
            f"    payload_class: {module}.Ping\n"
        )
    else:
        message = f"unknown benchmark flow kind {kind!r}"
        raise ValueError(message)
    return (
        f"organism:\n  name: bench-{kind}\n"
        f"max_concurrent_handlers: {in_flight}\n"
        f"listeners:\n{listener}"
    )
