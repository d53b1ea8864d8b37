"""Loading a listener's handler, whatever its kind, behind one ``Handler`` interface."""

from __future__ import annotations

from nextra.domain.flows.model import Listener, Organism
from nextra.runtime.handlers.base import (
    Handler,
    HandlerError,
    HandlerLoadFailed,
    HandlerUnavailable,
    InvalidReturn,
    Reply,
)
from nextra.runtime.handlers.builtin import load_builtin_handler
from nextra.runtime.handlers.python import load_python_handler

__all__ = (
    "Handler",
    "HandlerError",
    "HandlerLoadFailed",
    "HandlerUnavailable",
    "InvalidReturn",
    "Reply",
    "load_handler",
)


def load_handler(
    listener: Listener, organism: Organism, *, trusted_prefixes: tuple[str, ...]
) -> Handler:
    """The handler a listener names, ready to invoke.

    Args:
        listener: A listener of a validated flow.
        organism: That flow, for its declared payload types.
        trusted_prefixes: Module prefixes whose Python code this deployment may
            import; empty in the hosted service, which then refuses Python.

    Raises:
        HandlerLoadFailed: The handler or its payload class cannot be loaded,
            or is Python outside the trusted prefixes.
        HandlerUnavailable: The handler kind is not runnable in this version
            (WebAssembly modules, most built-ins).
    """
    kind = listener.handler_kind
    if kind == "builtin":
        return load_builtin_handler(listener)
    if kind == "python":
        return load_python_handler(
            listener, organism, trusted_prefixes=trusted_prefixes
        )
    msg = (
        f"listener {listener.name}: WebAssembly handlers ({listener.handler!r}) "
        "arrive in a later version of Nextra"
    )
    raise HandlerUnavailable(
        msg, expected="builtin or python", got=kind, where=listener.name
    )
