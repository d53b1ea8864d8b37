"""The only place that formats and parses Nextra's event subjects.

Grammar: ``nx.ev.<tenant>.<kind>.<aggregate_id>``. The tenant is always token 3 so
that filters, permissions and purges can address one tenant's events.
"""

from __future__ import annotations

from functools import lru_cache

from nextra.events.envelope import AggregateRef
from nextra.kernel.errors import ValidationError

__all__ = (
    "ALL_EVENTS",
    "EVENTS_PREFIX",
    "aggregate_subject",
    "kind_filter",
    "parse_aggregate_subject",
    "tenant_filter",
)

EVENTS_PREFIX = "nx.ev"
ALL_EVENTS = f"{EVENTS_PREFIX}.>"


def aggregate_subject(aggregate: AggregateRef) -> str:
    return f"{EVENTS_PREFIX}.{aggregate.tenant_id}.{aggregate.kind}.{aggregate.aggregate_id}"


# Every event read parses its subject; aggregates repeat, so remember them.
@lru_cache(maxsize=65_536)
def parse_aggregate_subject(subject: str) -> AggregateRef:
    parts = subject.split(".")
    if len(parts) != 5 or ".".join(parts[:2]) != EVENTS_PREFIX:
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
