"""Trusted handlers and payload classes for the Python handler loader's tests."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgspec

from nextra.sdk import HandlerMetadata, HandlerResponse, TextInput, TextOutput, payload


@payload
class Pair:
    a: int
    b: int


@payload(frozen=True)
class Sum:
    total: int


@dataclass
class Texts:
    code: str
    flag: str
    amount: str
    number: str


class Point(msgspec.Struct):
    x: int
    y: int


class NotAPayload:
    total = 1


async def add_and_forward(payload: Pair, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse(Sum(total=payload.a + payload.b), to="printer")


async def add_and_respond(payload: Pair, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(Sum(total=payload.a + payload.b))


async def nothing(payload: Any, metadata: HandlerMetadata) -> None:
    return None


async def fan_out(payload: Pair, metadata: HandlerMetadata) -> list[HandlerResponse]:
    return [
        HandlerResponse(Sum(total=payload.a), to="left"),
        HandlerResponse.respond(Sum(total=payload.a + payload.b)),
        HandlerResponse(Sum(total=payload.b), to="right"),
    ]


async def fan_out_tuple(payload: Pair, metadata: HandlerMetadata) -> Any:
    return (
        HandlerResponse(Sum(total=1), to="left"),
        HandlerResponse(Sum(total=2), to="right"),
    )


async def empty_list(payload: Any, metadata: HandlerMetadata) -> Any:
    return []


async def struct_payload(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(Point(x=1, y=2), to="plotter")


async def returns_text(payload: Any, metadata: HandlerMetadata) -> Any:
    return "hello"


async def returns_bytes(payload: Any, metadata: HandlerMetadata) -> Any:
    return b"<message><meta><from>system</from></meta></message>"


async def returns_number(payload: Any, metadata: HandlerMetadata) -> Any:
    return 3


async def forward_without_to(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(Sum(total=1))


async def forward_to_blank(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(Sum(total=1), to="  ")


async def forward_to_number(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(Sum(total=1), to=7)  # type: ignore[arg-type]


async def respond_and_forward(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse(Sum(total=1), to="left", is_response=True)


async def dict_payload(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse.respond({"total": 1})


async def class_payload(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse.respond(Sum)


async def plain_object_payload(payload: Any, metadata: HandlerMetadata) -> Any:
    return HandlerResponse.respond(NotAPayload())


async def list_with_none(payload: Any, metadata: HandlerMetadata) -> Any:
    return [HandlerResponse.respond(Sum(total=1)), None]


async def raises(payload: Any, metadata: HandlerMetadata) -> Any:
    msg = "the handler's own failure"
    raise RuntimeError(msg)


def sync_add(payload: Pair, metadata: HandlerMetadata) -> HandlerResponse:
    # Runs in a worker thread, not on the event loop's.
    on_loop_thread = threading.current_thread() is threading.main_thread()
    total = payload.a + payload.b
    return HandlerResponse.respond(
        TextOutput(text=str(total), status="loop" if on_loop_thread else "thread")
    )


def sync_returning_coroutine(payload: Pair, metadata: HandlerMetadata) -> Any:
    return add_and_respond(payload, metadata)


class AsyncCallable:
    async def __call__(self, payload: Pair, metadata: HandlerMetadata) -> Any:
        return HandlerResponse.respond(Sum(total=payload.a * payload.b))


multiply = AsyncCallable()
not_callable = 42


async def echo(payload: Any, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(payload)


async def describe(payload: Any, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(TextOutput(text=type(payload).__name__))


async def tell_metadata(payload: Any, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(
        TextOutput(text=f"{metadata.from_id}|{metadata.thread_id}|{metadata.run_id}")
    )


async def greet(payload: TextInput, metadata: HandlerMetadata) -> HandlerResponse:
    return HandlerResponse.respond(TextOutput(text=f"hello {payload.text}"))


async def summarise_order(payload: Any, metadata: HandlerMetadata) -> HandlerResponse:
    # Attribute access all the way down, as on any dataclass.
    skus = ",".join(item.sku for item in payload.items)
    customer = payload.customer.name if payload.customer else "nobody"
    return HandlerResponse.respond(
        TextOutput(text=f"{customer}:{skus}:{payload.tags['channel']}")
    )


async def reply_from(payload: Any, metadata: HandlerMetadata) -> HandlerResponse:
    # ``from`` is a keyword: the field is read as ``from_``.
    return HandlerResponse.respond(TextOutput(text=payload.from_))
