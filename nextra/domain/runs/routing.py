"""Where a handler's replies go: xml-pipeline's routing with Nextra's fixes.

Forward appends the target to the chain; respond prunes one name and goes to the
new last one; a respond that reaches the trigger is the run's output (D3). Names
and payload types match without regard to case; peers bind agents that list
them. Nothing is silent: every reply that is not delivered comes back as a
``DroppedMessage`` with its reason (D6).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import msgspec

from nextra.domain.flows.catalogue import BUILTIN_PAYLOADS
from nextra.domain.flows.model import Listener, Organism, PayloadType
from nextra.domain.runs.payloads import PayloadInvalid, payload_size, validate_payload
from nextra.domain.runs.state import RunState
from nextra.domain.runs.threads import thread_id
from nextra.events.runs import (
    DroppedMessage,
    DropReason,
    FailureReason,
    Message,
    MessageKind,
    RunLimits,
)

__all__ = ("Reply", "Routed", "listeners_for", "payload_type_of", "route")


class Reply(msgspec.Struct, frozen=True, kw_only=True):
    """One thing a handler returned: a forward to ``to``, or a respond."""

    kind: Literal["forward", "respond"]
    to: str | None
    payload_type: str
    payload: dict[str, Any]


class Routed(msgspec.Struct, frozen=True, kw_only=True):
    """The messages one handler call sends on, and what became of the rest.

    Attributes:
        limit: Set when the replies cross a run limit: then nothing is sent and
            the run ends with that reason, explained in ``detail``.
    """

    sent: tuple[Message, ...] = ()
    dropped: tuple[DroppedMessage, ...] = ()
    responded: bool = False
    limit: FailureReason | None = None
    detail: str = ""


def listeners_for(organism: Organism, to: str, payload_type: str) -> list[Listener]:
    """The listener entries a message reaches, in declaration order.

    The routing key is ``lower(name).lower(type)``; surrounding spaces in the
    name are ignored, as xml-pipeline does.
    """
    key = f"{to.strip().lower()}.{payload_type.lower()}"
    return [listener for listener in organism.listeners if listener.routing_key == key]


def payload_type_of(organism: Organism, listener: Listener) -> PayloadType:
    """The payload type a listener takes, however it was defined."""
    declared = organism.payload(listener.payload_type)
    if declared is not None:
        return declared
    builtin = BUILTIN_PAYLOADS.get(listener.payload_type)
    if builtin is not None:
        return builtin
    # Python dataclasses and WebAssembly exports are checked where they load.
    return PayloadType(name=listener.payload_type, source=listener.payload_source)


def route(
    organism: Organism,
    state: RunState,
    message: Message,
    listener: Listener,
    replies: Sequence[Reply],
) -> Routed:
    """Decide what becomes of ``replies``, returned by ``listener`` for ``message``.

    Message ids continue the run's numbering, so the same replies routed against
    the same state always give the same messages.
    """
    limits = state.limits
    assert limits is not None, "a run's state has limits once it is triggered"

    if len(replies) > limits.max_fan_out:
        detail = (
            f"listener {listener.name} returned {len(replies)} messages; the run "
            f"allows at most {limits.max_fan_out} from one step"
        )
        return Routed(limit="fan_out_limit", detail=detail)
    for reply in replies:
        size = payload_size(reply.payload)
        if size > limits.max_payload_bytes:
            detail = (
                f"listener {listener.name} sent a {reply.payload_type} of {size} "
                f"bytes; the run allows at most {limits.max_payload_bytes}"
            )
            return Routed(limit="payload_limit", detail=detail)

    builder = _Builder(organism, state, message, listener, limits)
    for reply in replies:
        if reply.kind == "forward":
            builder.forward(reply)
        else:
            builder.respond(reply)

    if state.message_count + len(builder.sent) > limits.max_hops:
        detail = (
            f"listener {listener.name} would send message "
            f"{state.message_count + len(builder.sent)} of the run; the run "
            f"allows {limits.max_hops}"
        )
        return Routed(limit="hop_limit", detail=detail, responded=builder.responded)
    return Routed(
        sent=tuple(builder.sent),
        dropped=tuple(builder.dropped),
        responded=builder.responded,
    )


class _Builder:
    """Turns replies into messages one by one, numbering them as it goes."""

    def __init__(
        self,
        organism: Organism,
        state: RunState,
        message: Message,
        listener: Listener,
        limits: RunLimits,
    ) -> None:
        self.organism = organism
        self.state = state
        self.message = message
        self.listener = listener
        self.limits = limits
        self.sent: list[Message] = []
        self.dropped: list[DroppedMessage] = []
        self.responded = False

    def forward(self, reply: Reply) -> None:
        target = reply.to or ""
        sender = self.listener
        if sender.agent and sender.peers:
            allowed = {peer.strip().lower() for peer in sender.peers}
            if target.strip().lower() not in allowed:
                peers = ", ".join(sender.peers)
                detail = f"agent {sender.name} may send to {peers}, not to {target!r}"
                self.drop("peer_violation", detail, reply)
                self.tell_agent(detail)
                return
        self.deliver(reply, target, (*self.message.chain, target), "forward")

    def respond(self, reply: Reply) -> None:
        self.responded = True
        chain = self.message.chain
        if len(chain) <= 1:
            detail = f"listener {self.listener.name} responded with nobody to answer"
            self.drop("no_caller", detail, reply, to="")
            return

        back = chain[:-1]
        caller = back[-1]
        if len(back) == 1:
            # The trigger's own segment: this answer is the run's output (D3).
            self.sent.append(
                self.new_message(reply, caller, back, "respond", receivers=0)
            )
            return
        if thread_id(self.state.run_id, back) in self.state.closed:
            detail = (
                f"{caller} had already responded to its caller; the reply from "
                f"{self.listener.name} came too late and was not delivered"
            )
            self.drop("late_reply", detail, reply, to=caller)
            return
        self.deliver(reply, caller, back, "respond")

    def deliver(
        self, reply: Reply, to: str, chain: tuple[str, ...], kind: MessageKind
    ) -> None:
        receivers = listeners_for(self.organism, to, reply.payload_type)
        if not receivers:
            key = f"{to.strip().lower()}.{reply.payload_type.lower()}"
            detail = f"no listener for: {key}"
            self.drop("unroutable", detail, reply, to=to)
            return
        expected = payload_type_of(self.organism, receivers[0])
        try:
            payload = validate_payload(reply.payload, expected, self.organism)
        except PayloadInvalid as error:
            self.drop("invalid_payload", str(error), reply, to=to)
            return
        checked = Reply(
            kind=reply.kind, to=to, payload_type=expected.name, payload=payload
        )
        self.sent.append(
            self.new_message(checked, to, chain, kind, receivers=len(receivers))
        )

    def tell_agent(self, detail: str) -> None:
        # An agent that declares it accepts SystemError hears about the refusal
        # on its own thread and may retry (D6); others only see the record.
        own = self.listener.name
        if not listeners_for(self.organism, own, "SystemError"):
            return
        error = Reply(
            kind="forward",
            to=own,
            payload_type="SystemError",
            payload={"code": "routing", "message": detail, "retry_allowed": True},
        )
        receivers = len(listeners_for(self.organism, own, "SystemError"))
        self.sent.append(
            self.new_message(
                error, own, self.message.chain, "system", receivers=receivers
            )
        )

    def new_message(
        self,
        reply: Reply,
        to: str,
        chain: tuple[str, ...],
        kind: MessageKind,
        *,
        receivers: int,
    ) -> Message:
        number = self.state.message_count + len(self.sent) + 1
        sender = self.listener.name if kind != "system" else "system"
        return Message(
            id=str(number),
            kind=kind,
            sender=sender,
            to=to,
            payload_type=reply.payload_type,
            payload=reply.payload,
            chain=chain,
            thread_id=thread_id(self.state.run_id, chain),
            receivers=receivers,
        )

    def drop(
        self,
        reason: DropReason,
        detail: str,
        reply: Reply,
        *,
        to: str | None = None,
    ) -> None:
        self.dropped.append(
            DroppedMessage(
                reason=reason,
                detail=detail,
                sender=self.listener.name,
                to=(reply.to or "") if to is None else to,
                payload_type=reply.payload_type,
                payload=reply.payload,
            )
        )
