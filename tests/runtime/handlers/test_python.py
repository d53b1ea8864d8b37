"""Python handlers: trusted imports, payload classes, and what a handler may return."""

from __future__ import annotations

import sys
from typing import Any

import pytest

from nextra.domain.flows import HandlerPolicy, Listener, Organism, load_organism
from nextra.domain.flows.model import PayloadField, PayloadType, TypeRef
from nextra.domain.runs.builtin_payloads import TextInput
from nextra.domain.runs.contract import HandlerMetadata
from nextra.domain.runs.payloads import PayloadInvalid
from nextra.runtime.handlers import (
    HandlerLoadFailed,
    HandlerUnavailable,
    InvalidReturn,
    Reply,
    load_handler,
)
from nextra.runtime.handlers.python import PythonHandler, replies_from

SAMPLE = "tests.runtime.handlers.sample_handlers"
UNTRUSTED = "tests.runtime.handlers.untrusted_handlers"
TRUSTED = ("tests.",)
META = HandlerMetadata(thread_id="thread-1", from_id="user:ada", run_id="run-1")
EMPTY = Organism(name="empty")


def python_listener(
    handler: str,
    payload_class: str = f"{SAMPLE}.Pair",
    *,
    payload_type: str = "Pair",
    payload_source: Any = "python",
) -> Listener:
    return Listener(
        name="adder",
        payload_class=payload_class,
        handler=handler if "." in handler else f"{SAMPLE}.{handler}",
        description="A test listener.",
        handler_kind="python",
        payload_type=payload_type,
        payload_source=payload_source,
    )


async def run(handler: str, payload: dict[str, Any] | None = None) -> list[Reply]:
    loaded = load_handler(python_listener(handler), EMPTY, trusted_prefixes=TRUSTED)
    return await loaded.invoke(payload or {"a": 1, "b": 2}, META)


# --- what a handler returns ----------------------------------------------------------


async def test_a_forward_names_its_target_and_payload_type() -> None:
    assert await run("add_and_forward") == [
        Reply(kind="forward", to="printer", payload_type="Sum", payload={"total": 3})
    ]


async def test_a_respond_has_no_target() -> None:
    assert await run("add_and_respond") == [
        Reply(kind="respond", to=None, payload_type="Sum", payload={"total": 3})
    ]


async def test_none_means_no_replies() -> None:
    assert await run("nothing") == []


async def test_an_empty_list_means_no_replies() -> None:
    assert await run("empty_list") == []


async def test_a_list_is_explicit_fan_out_in_order() -> None:
    replies = await run("fan_out", {"a": 1, "b": 2})
    assert [(r.kind, r.to, r.payload) for r in replies] == [
        ("forward", "left", {"total": 1}),
        ("respond", None, {"total": 3}),
        ("forward", "right", {"total": 2}),
    ]


async def test_a_tuple_fans_out_too() -> None:
    replies = await run("fan_out_tuple")
    assert [r.to for r in replies] == ["left", "right"]


async def test_a_msgspec_struct_is_a_payload_too() -> None:
    assert await run("struct_payload") == [
        Reply(
            kind="forward", to="plotter", payload_type="Point", payload={"x": 1, "y": 2}
        )
    ]


@pytest.mark.parametrize(
    ("handler", "fragment"),
    [
        ("returns_text", "returned str 'hello'"),
        ("returns_bytes", "raw envelopes are never accepted"),
        ("returns_number", "returned int 3"),
        ("forward_without_to", "a forward without a target (to=None)"),
        ("forward_to_blank", "a forward without a target (to='  ')"),
        ("forward_to_number", "a forward without a target (to=7)"),
        ("respond_and_forward", "both a respond and a forward to 'left'"),
        ("dict_payload", "whose payload is a dict"),
        ("class_payload", "whose payload is a type"),
        ("plain_object_payload", "whose payload is a NotAPayload"),
    ],
)
async def test_anything_else_is_an_invalid_return(handler: str, fragment: str) -> None:
    with pytest.raises(InvalidReturn) as caught:
        await run(handler)
    assert fragment in str(caught.value)
    assert caught.value.where == "adder"
    assert caught.value.code == "invalid-return"


async def test_an_invalid_item_of_a_list_is_named_by_position() -> None:
    with pytest.raises(InvalidReturn, match="returned None") as caught:
        await run("list_with_none")
    assert caught.value.where == "adder[1]"


async def test_what_the_handler_raises_reaches_the_caller_unchanged() -> None:
    with pytest.raises(RuntimeError, match="the handler's own failure"):
        await run("raises")


def test_replies_from_needs_no_loaded_handler() -> None:
    assert replies_from(None, listener="x") == []
    with pytest.raises(InvalidReturn, match="listener x returned bytes"):
        replies_from(bytearray(b"<message/>"), listener="x")


# --- how a handler is called -------------------------------------------------------


async def test_a_plain_function_runs_in_a_thread() -> None:
    (reply,) = await run("sync_add", {"a": 2, "b": 5})
    assert reply.payload == {"text": "7", "status": "thread"}


async def test_a_plain_function_returning_a_coroutine_is_awaited() -> None:
    (reply,) = await run("sync_returning_coroutine")
    assert reply.payload == {"total": 3}


async def test_an_object_with_an_async_call_is_a_handler() -> None:
    loaded = load_handler(python_listener("multiply"), EMPTY, trusted_prefixes=TRUSTED)
    assert isinstance(loaded, PythonHandler)
    assert loaded.is_async
    (reply,) = await loaded.invoke({"a": 3, "b": 4}, META)
    assert reply.payload == {"total": 12}


async def test_metadata_is_passed_as_given() -> None:
    (reply,) = await run("tell_metadata")
    assert reply.payload["text"] == "user:ada|thread-1|run-1"


# --- payload classes ----------------------------------------------------------------


@pytest.mark.parametrize("text", ["007", "true", "1.50", "NaN", "", "  "])
async def test_strings_reach_a_dataclass_verbatim(text: str) -> None:
    listener = python_listener("echo", f"{SAMPLE}.Texts", payload_type="Texts")
    loaded = load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    data = {"code": text, "flag": "true", "amount": "1.50", "number": "NaN"}
    (reply,) = await loaded.invoke(data, META)
    assert reply.payload == data
    assert reply.payload_type == "Texts"


async def test_the_handler_receives_its_payload_class() -> None:
    listener = python_listener("describe", f"{SAMPLE}.Texts", payload_type="Texts")
    loaded = load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    data = {"code": "007", "flag": "true", "amount": "1.50", "number": "NaN"}
    (reply,) = await loaded.invoke(data, META)
    assert reply.payload["text"] == "Texts"


async def test_a_dataclass_payload_is_converted_strictly() -> None:
    with pytest.raises(PayloadInvalid) as caught:
        await run("add_and_respond", {"a": "1", "b": 2})
    assert str(caught.value) == "Pair.a: expected `int`, got `str`"
    assert caught.value.where == "a"
    with pytest.raises(PayloadInvalid, match=r"^Pair: object missing required field"):
        await run("add_and_respond", {"a": 1})


async def test_a_built_in_type_arrives_as_nextras_dataclass() -> None:
    listener = python_listener(
        "greet", "TextInput", payload_type="TextInput", payload_source="builtin"
    )
    loaded = load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    assert isinstance(loaded, PythonHandler)
    argument = loaded.to_argument({"text": "007", "source": "api", "user": ""})
    assert argument == TextInput(text="007", source="api", user="")
    (reply,) = await loaded.invoke({"text": "Ada", "source": "api", "user": ""}, META)
    assert reply.payload == {"text": "hello Ada", "status": "ok"}


async def test_a_built_in_type_without_a_class_of_its_own_gets_one() -> None:
    listener = python_listener(
        "echo", "HttpResponse", payload_type="HttpResponse", payload_source="builtin"
    )
    loaded = load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    data = {"status": 200, "headers": {"etag": "007"}, "body": "true"}
    assert isinstance(loaded, PythonHandler)
    assert loaded.to_argument(data).headers == {"etag": "007"}
    (reply,) = await loaded.invoke(data, META)
    assert (reply.payload_type, reply.payload) == ("HttpResponse", data)


async def test_a_built_in_payload_is_checked_by_its_catalogue_fields() -> None:
    listener = python_listener(
        "greet", "TextInput", payload_type="TextInput", payload_source="builtin"
    )
    loaded = load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    with pytest.raises(PayloadInvalid, match=r"^TextInput\.user: missing$"):
        await loaded.invoke({"text": "Ada", "source": "api"}, META)


DECLARED = f"""\
organism:
  name: shop
payloads:
  Order:
    id: str
    items: list[Item]
    customer: Customer | None
    tags: dict[str, str]
    reply: TextOutput
  Item:
    sku: str
    qty: int
  Customer:
    name: str
  Mail:
    from: str
    to: str
listeners:
  - name: summary
    payload_class: Order
    handler: {SAMPLE}.summarise_order
    description: Summarises an order.
  - name: echo
    payload_class: Order
    handler: {SAMPLE}.echo
    description: Echoes an order.
  - name: mail
    payload_class: Mail
    handler: {SAMPLE}.reply_from
    description: Reads the sender.
  - name: mail-echo
    payload_class: Mail
    handler: {SAMPLE}.echo
    description: Echoes mail.
"""


@pytest.fixture(scope="module")
def shop() -> Organism:
    return load_organism(
        DECLARED, policy=HandlerPolicy(trusted_python_prefixes=TRUSTED)
    )


def order(**changes: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": "007",
        "items": [{"sku": "A-1", "qty": 2}, {"sku": "B-2", "qty": 1}],
        "customer": {"name": "Ada"},
        "tags": {"channel": "web"},
        "reply": {"text": "true", "status": "ok"},
    }
    data.update(changes)
    return data


def shop_handler(shop: Organism, name: str) -> PythonHandler:
    listener = next(entry for entry in shop.listeners if entry.name == name)
    loaded = load_handler(listener, shop, trusted_prefixes=TRUSTED)
    assert isinstance(loaded, PythonHandler)
    return loaded


async def test_a_declared_type_gives_attribute_access(shop: Organism) -> None:
    (reply,) = await shop_handler(shop, "summary").invoke(order(), META)
    assert reply.payload["text"] == "Ada:A-1,B-2:web"
    (reply,) = await shop_handler(shop, "summary").invoke(order(customer=None), META)
    assert reply.payload["text"] == "nobody:A-1,B-2:web"


async def test_a_declared_type_is_a_dataclass_named_after_it(shop: Organism) -> None:
    argument = shop_handler(shop, "summary").to_argument(order())
    assert type(argument).__name__ == "Order"
    assert type(argument.items[0]).__name__ == "Item"
    assert argument.id == "007"
    # A built-in type inside a declared one is the built-in dataclass.
    assert type(argument.reply).__module__ == "nextra.domain.runs.builtin_payloads"


async def test_declared_classes_are_made_once_per_type(shop: Organism) -> None:
    first = shop_handler(shop, "summary").to_argument(order())
    second = shop_handler(shop, "echo").to_argument(order())
    assert type(first) is type(second)


async def test_a_declared_payload_round_trips_unchanged(shop: Organism) -> None:
    (reply,) = await shop_handler(shop, "echo").invoke(order(), META)
    assert reply == Reply(
        kind="respond", to=None, payload_type="Order", payload=order()
    )


async def test_a_keyword_field_is_read_with_an_underscore(shop: Organism) -> None:
    mail = {"from": "ada@example.org", "to": "bob@example.org"}
    (reply,) = await shop_handler(shop, "mail").invoke(mail, META)
    assert reply.payload["text"] == "ada@example.org"
    (reply,) = await shop_handler(shop, "mail-echo").invoke(mail, META)
    assert reply.payload == mail


async def test_a_declared_payload_is_checked_first(shop: Organism) -> None:
    items = [{"sku": "A-1", "qty": "2"}]
    with pytest.raises(PayloadInvalid, match=r"^Order\.items\[0\]\.qty: expected int"):
        await shop_handler(shop, "summary").invoke(order(items=items), META)


async def test_a_flow_validated_with_trust_loads_its_python_handler() -> None:
    flow = f"""\
organism:
  name: adder
listeners:
  - name: adder
    payload_class: {SAMPLE}.Pair
    handler: {SAMPLE}.add_and_forward
    description: Adds.
"""
    organism = load_organism(
        flow, policy=HandlerPolicy(trusted_python_prefixes=TRUSTED)
    )
    (listener,) = organism.listeners
    loaded = load_handler(listener, organism, trusted_prefixes=TRUSTED)
    (reply,) = await loaded.invoke({"a": 20, "b": 22}, META)
    assert reply.payload == {"total": 42}


# --- what may not be loaded ----------------------------------------------------------


def test_a_module_outside_the_trusted_prefixes_is_not_imported() -> None:
    listener = python_listener(f"{UNTRUSTED}.handler")
    with pytest.raises(HandlerLoadFailed, match="not under a trusted module prefix"):
        load_handler(listener, EMPTY, trusted_prefixes=(SAMPLE,))
    assert UNTRUSTED not in sys.modules


def test_a_prefix_matches_whole_module_names_only() -> None:
    listener = python_listener("echo")
    with pytest.raises(HandlerLoadFailed, match="not under a trusted module prefix"):
        load_handler(
            listener, EMPTY, trusted_prefixes=("tests.runtime.handlers.sample",)
        )


def test_without_trusted_prefixes_no_python_loads() -> None:
    with pytest.raises(HandlerLoadFailed, match=r"\(trusted: none\)"):
        load_handler(python_listener("echo"), EMPTY, trusted_prefixes=())


def test_an_untrusted_payload_class_is_refused() -> None:
    listener = python_listener("echo", "collections.OrderedDict")
    with pytest.raises(HandlerLoadFailed, match="payload_class 'collections"):
        load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)


def test_the_colon_form_is_refused_as_the_validator_does() -> None:
    listener = python_listener(f"{SAMPLE}:echo")
    with pytest.raises(HandlerLoadFailed, match="module:attribute form") as caught:
        load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)
    assert f"write '{SAMPLE}.echo'" in str(caught.value)


@pytest.mark.parametrize(
    ("handler", "fragment"),
    [
        ("tests.runtime.handlers.no_such_module.handler", "ModuleNotFoundError"),
        (f"{SAMPLE}.no_such_function", "AttributeError"),
    ],
)
def test_an_import_that_fails_says_why(handler: str, fragment: str) -> None:
    with pytest.raises(HandlerLoadFailed, match=fragment) as caught:
        load_handler(python_listener(handler), EMPTY, trusted_prefixes=TRUSTED)
    assert caught.value.code == "handler-load-failed"
    assert caught.value.where == "adder"


def test_a_handler_must_be_callable() -> None:
    with pytest.raises(HandlerLoadFailed, match="is a int, not a function"):
        load_handler(python_listener("not_callable"), EMPTY, trusted_prefixes=TRUSTED)


def test_a_python_payload_class_must_be_a_dataclass() -> None:
    listener = python_listener("echo", f"{SAMPLE}.NotAPayload")
    with pytest.raises(HandlerLoadFailed, match="is not a dataclass"):
        load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)


def test_a_webassembly_payload_type_is_not_available_yet() -> None:
    listener = python_listener(
        "echo", "wasm:calc/Expression", payload_type="Expression", payload_source="wasm"
    )
    with pytest.raises(HandlerUnavailable, match="later version"):
        load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)


def test_an_unknown_declared_type_is_refused_at_load() -> None:
    listener = python_listener(
        "echo", "Missing", payload_type="Missing", payload_source="declared"
    )
    with pytest.raises(HandlerLoadFailed, match="neither declared in the flow"):
        load_handler(listener, EMPTY, trusted_prefixes=TRUSTED)


def test_a_type_python_cannot_express_is_refused_at_load() -> None:
    # The validator refuses this flow; a loader given it anyway says why.
    text = TypeRef(kind="str")
    mail = PayloadType(
        name="Mail",
        fields=(
            PayloadField(name="from", type=text),
            PayloadField(name="from_", type=text),
        ),
    )
    listener = python_listener(
        "echo", "Mail", payload_type="Mail", payload_source="declared"
    )
    organism = Organism(name="odd", payloads=(mail,))
    with pytest.raises(HandlerLoadFailed, match="cannot be made a Python class"):
        load_handler(listener, organism, trusted_prefixes=TRUSTED)
