"""What every handler kind offers the worker: one call, a list of replies, its errors."""

from __future__ import annotations

from typing import Any, Protocol

from nextra.domain.runs.contract import HandlerMetadata
from nextra.domain.runs.routing import Reply
from nextra.kernel.errors import NextraError

__all__ = (
    "Handler",
    "HandlerError",
    "HandlerLoadFailed",
    "HandlerUnavailable",
    "InvalidReturn",
    "Reply",
)

# Reply is the run domain's type, re-exported: routing takes exactly what a
# handler gives, and the domain cannot import from the runtime.


class Handler(Protocol):
    """A loaded handler, ready to be called once per delivered message."""

    async def invoke(
        self, payload: dict[str, Any], metadata: HandlerMetadata
    ) -> list[Reply]:
        """Handle one message.

        Args:
            payload: The message's payload as JSON-shaped data, already checked
                against the listener's payload type.
            metadata: What the runtime tells the handler about the message.

        Returns:
            The replies in the order the handler gave them; empty when it
            returned ``None``.

        Raises:
            InvalidReturn: The handler returned something that is not a reply.
            Exception: Whatever the handler's own code raised, unchanged: the
                worker records it on the run.
        """
        ...


class HandlerError(NextraError):
    """A handler could not be loaded or called, or broke the handler contract."""

    code = "handler-error"


class InvalidReturn(HandlerError):
    """A handler returned something other than ``None`` or its replies.

    ``where`` names the listener, with the position in a returned list
    (``summarizer[2]``) when one item of it is at fault.
    """

    code = "invalid-return"


class HandlerUnavailable(HandlerError):
    """The handler kind exists in the catalogue but this version cannot run it."""

    code = "handler-unavailable"


class HandlerLoadFailed(HandlerError):
    """A handler's code or payload class could not be loaded, or may not be."""

    code = "handler-load-failed"
