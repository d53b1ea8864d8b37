"""The exception tree every Nextra layer raises from.

::

    NextraError
    ├── ConfigurationError        a setting is missing or invalid
    ├── ValidationError           input that breaks a rule (expected, got, where)
    ├── NotFoundError             the named object does not exist (for this tenant)
    ├── ConflictError             the command does not fit the object's state
    ├── PreconditionFailed        the caller's version of an object is stale
    ├── LimitExceeded             the tenant's tier does not allow more
    ├── ConcurrencyError          an append's expected version was stale
    ├── EventStoreError           the event store failed or refused
    │   ├── EventStoreUnavailable the server could not be reached
    │   ├── EventStoreTimeout     no answer in time: the outcome is unknown
    │   └── StreamConflict        a stream exists with settings we cannot reconcile
    ├── EventContractError        an event cannot be encoded, decoded or upcast
    └── ProjectionError           a read model cannot be built or queried

Every error carries structured fields next to its message so that the API can turn
it into an RFC 9457 problem document and logs can record it by field.
"""

from __future__ import annotations

from typing import Any

__all__ = (
    "ConcurrencyError",
    "ConfigurationError",
    "ConflictError",
    "EventContractError",
    "EventStoreError",
    "EventStoreTimeout",
    "EventStoreUnavailable",
    "LimitExceeded",
    "NextraError",
    "NotFoundError",
    "PreconditionFailed",
    "ProjectionError",
    "StreamConflict",
    "ValidationError",
)


class NextraError(Exception):
    """Root of every error Nextra raises on purpose.

    Args:
        message: One sentence a person understands.
        expected: What the rule asked for, when there is one.
        got: What was found instead.
        where: The place: a setting name, a stream, an aggregate, a field path.
    """

    code = "nextra-error"

    def __init__(
        self,
        message: str,
        *,
        expected: Any = None,
        got: Any = None,
        where: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.expected = expected
        self.got = got
        self.where = where

    def fields(self) -> dict[str, Any]:
        """The structured parts of the error, without empty ones."""
        parts = {"expected": self.expected, "got": self.got, "where": self.where}
        return {key: value for key, value in parts.items() if value is not None}


class ConfigurationError(NextraError):
    code = "configuration"


class ValidationError(NextraError):
    code = "validation"


class NotFoundError(NextraError):
    code = "not-found"


class ConflictError(NextraError):
    code = "conflict"


class PreconditionFailed(NextraError):
    """The caller changed an object from a version that is no longer current."""

    code = "precondition-failed"


class LimitExceeded(NextraError):
    """The tenant's tier allows no more of something.

    ``where`` names the limit (``tier.flows``), ``expected`` the limit and
    ``got`` what the command would have made it.
    """

    code = "limit-exceeded"


class ConcurrencyError(NextraError):
    """An append expected the aggregate at one version and found another.

    Args:
        aggregate: The aggregate's subject-free name, ``tenant/type/id``.
        expected_version: The version the writer loaded.
        actual_version: The version the store holds.
    """

    code = "concurrency-conflict"

    def __init__(
        self, aggregate: str, expected_version: int, actual_version: int | None
    ) -> None:
        actual = "unknown" if actual_version is None else str(actual_version)
        message = (
            f"aggregate {aggregate} was changed by someone else: expected version "
            f"{expected_version}, found {actual}; reload and decide again"
        )
        super().__init__(
            message, expected=expected_version, got=actual_version, where=aggregate
        )
        self.aggregate = aggregate
        self.expected_version = expected_version
        self.actual_version = actual_version


class EventStoreError(NextraError):
    code = "event-store"


class EventStoreUnavailable(EventStoreError):
    code = "event-store-unavailable"


class EventStoreTimeout(EventStoreError):
    """The store did not answer in time; the write may or may not have happened.

    Retrying with the same command id is safe: the store deduplicates it.
    """

    code = "event-store-timeout"


class StreamConflict(EventStoreError):
    code = "stream-conflict"


class EventContractError(NextraError):
    code = "event-contract"


class ProjectionError(NextraError):
    code = "projection"
