"""Header names Nextra writes on every event: a public contract for subscribers."""

from __future__ import annotations

__all__ = (
    "ACTOR",
    "CAUSATION_ID",
    "COMMAND_ID",
    "CORRELATION_ID",
    "EVENT_ID",
    "EVENT_TYPE",
    "SCHEMA_VERSION",
    "TENANT",
    "TRACEPARENT",
)

# Nextra's own headers carry the Nx- prefix: Nats- is reserved for the server.
EVENT_TYPE = "Nx-Event-Type"
SCHEMA_VERSION = "Nx-Schema-Version"
EVENT_ID = "Nx-Event-Id"
TENANT = "Nx-Tenant"
ACTOR = "Nx-Actor"
COMMAND_ID = "Nx-Command-Id"
CORRELATION_ID = "Nx-Correlation-Id"
CAUSATION_ID = "Nx-Causation-Id"
TRACEPARENT = "traceparent"  # W3C Trace Context keeps its own name
