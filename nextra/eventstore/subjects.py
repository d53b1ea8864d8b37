"""The only place that formats and parses Nextra's event subjects.

Two grammars, one per stream:

- ``nx.ev.<tenant>.<kind>.<aggregate_id>``: long-lived aggregates (tenants, flows)
  on ``NX_EVENTS``;
- ``nx.run.<tenant>.<flow_id>.<run_id>``: runs on ``NX_RUNS``, with the flow as a
  token so a flow's runs can be consumed, limited and scheduled on their own.

The tenant is always token 3 so that filters, permissions and purges can address
one tenant's events.
"""

from __future__ import annotations

from functools import lru_cache

from nextra.events.envelope import AggregateRef
from nextra.kernel.errors import ValidationError

__all__ = (
    "ALL_EVENTS",
    "ALL_RUNS",
    "EVENTS_PREFIX",
    "RUNS_PREFIX",
    "aggregate_subject",
    "flow_runs_filter",
    "kind_filter",
    "parse_aggregate_subject",
    "run_aggregate",
    "runs_subject",
    "tenant_filter",
    "tenant_runs_filter",
)

EVENTS_PREFIX = "nx.ev"
ALL_EVENTS = f"{EVENTS_PREFIX}.>"
RUNS_PREFIX = "nx.run"
ALL_RUNS = f"{RUNS_PREFIX}.>"
RUN_KIND = "run"


def run_aggregate(tenant_id: str, flow_id: str, run_id: str) -> AggregateRef:
    """The aggregate of one run of a flow."""
    return AggregateRef(tenant_id, RUN_KIND, run_id, partition=flow_id)


def aggregate_subject(aggregate: AggregateRef) -> str:
    if aggregate.kind == RUN_KIND and aggregate.partition is not None:
        return (
            f"{RUNS_PREFIX}.{aggregate.tenant_id}.{aggregate.partition}."
            f"{aggregate.aggregate_id}"
        )
    return f"{EVENTS_PREFIX}.{aggregate.tenant_id}.{aggregate.kind}.{aggregate.aggregate_id}"


# Every event read parses its subject; aggregates repeat, so remember them.
@lru_cache(maxsize=65_536)
def parse_aggregate_subject(subject: str) -> AggregateRef:
    parts = subject.split(".")
    prefix = ".".join(parts[:2])
    if len(parts) == 5 and prefix == RUNS_PREFIX:
        return AggregateRef(parts[2], RUN_KIND, parts[4], partition=parts[3])
    if len(parts) != 5 or prefix != EVENTS_PREFIX:
        message = f"subject {subject!r} is not an aggregate subject"
        raise ValidationError(
            message, expected=f"{EVENTS_PREFIX}.<tenant>.<kind>.<id>", got=subject
        )
    return AggregateRef(parts[2], parts[3], parts[4])


def tenant_filter(tenant_id: str) -> str:
    """Every event of one tenant."""
    return f"{EVENTS_PREFIX}.{tenant_id}.>"


def kind_filter(kind: str) -> str:
    """Every event of every aggregate of one kind, across tenants."""
    return f"{EVENTS_PREFIX}.*.{kind}.*"


def runs_subject(tenant_id: str, flow_id: str, run_id: str) -> str:
    """A run's subject; ``*`` for the flow finds a run by its id alone."""
    return f"{RUNS_PREFIX}.{tenant_id}.{flow_id}.{run_id}"


def tenant_runs_filter(tenant_id: str) -> str:
    """Every event of every run of one tenant."""
    return f"{RUNS_PREFIX}.{tenant_id}.>"


def flow_runs_filter(tenant_id: str, flow_id: str) -> str:
    """Every event of every run of one flow."""
    return f"{RUNS_PREFIX}.{tenant_id}.{flow_id}.*"
