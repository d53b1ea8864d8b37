"""Python handlers of a self-hosted deployment: import, call, and read back the replies.

A handler is ``async def handler(payload, metadata)`` as in xml-pipeline 0.4.0
(a plain function also works and runs in a thread). It receives an instance of
its listener's payload class with every string exactly as sent, and returns
``None``, a ``HandlerResponse`` (Nextra's or xml-pipeline's own), or a list of
them for explicit fan-out.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import inspect
import keyword
import re
from collections.abc import Callable
from typing import Any, ClassVar

import msgspec

from nextra.domain.flows.catalogue import PAYLOAD_ALIASES
from nextra.domain.flows.model import Listener, Organism, PayloadType, TypeRef
from nextra.domain.flows.validate import HandlerPolicy
from nextra.domain.runs.builtin_payloads import BUILTIN_PAYLOAD_CLASSES
from nextra.domain.runs.contract import HandlerMetadata, HandlerResponse
from nextra.domain.runs.payloads import (
    PayloadInvalid,
    resolve_payload_type,
    validate_payload,
)
from nextra.runtime.handlers.base import (
    HandlerLoadFailed,
    HandlerUnavailable,
    InvalidReturn,
    Reply,
)

__all__ = ("PythonHandler", "load_python_handler", "replies_from")

_CONTRACT = (
    "a handler returns None, HandlerResponse(payload, to=...), "
    "HandlerResponse.respond(payload), or a list of responses"
)


class PythonHandler:
    """A trusted Python handler bound to its listener's payload class.

    Build it with ``load_python_handler``.

    Args:
        listener: The listener it serves.
        target: The imported handler callable.
        to_argument: Turns the incoming payload data into the handler's argument.
    """

    def __init__(
        self,
        listener: Listener,
        target: Callable[..., Any],
        to_argument: Callable[[dict[str, Any]], Any],
    ) -> None:
        self.listener = listener
        self.target = target
        self.to_argument = to_argument
        self.is_async = _is_async(target)

    def __repr__(self) -> str:
        return f"PythonHandler({self.listener.name!r}, {self.listener.handler!r})"

    async def invoke(
        self, payload: dict[str, Any], metadata: HandlerMetadata
    ) -> list[Reply]:
        """Call the handler with ``payload`` as its payload class; see ``Handler``.

        Raises:
            PayloadInvalid: ``payload`` does not fit the payload class.
            InvalidReturn: The handler's return value is not a reply.
        """
        argument = self.to_argument(payload)
        if self.is_async:
            result = await self.target(argument, metadata)
        else:
            # A blocking handler must not stall the worker's event loop. Python
            # cannot stop a thread, so a timeout abandons such a call rather
            # than cancelling it.
            result = await asyncio.to_thread(self.target, argument, metadata)
        # A plain function may still hand back a coroutine (a wrapper around an
        # async handler, say); its answer is what that coroutine returns.
        if inspect.isawaitable(result):
            result = await result
        return replies_from(result, listener=self.listener.name)


def load_python_handler(
    listener: Listener, organism: Organism, *, trusted_prefixes: tuple[str, ...]
) -> PythonHandler:
    """Import a listener's Python handler and prepare its payload class.

    References are read as the validator reads them: ``package.module.function``
    and ``package.module.Class``, under one of ``trusted_prefixes``.

    Args:
        listener: A listener whose ``handler_kind`` is ``python``.
        organism: The flow, for its declared payload types.
        trusted_prefixes: The deployment's trusted module prefixes.

    Raises:
        HandlerLoadFailed: A reference is untrusted or malformed, an import
            failed, or the payload class is not a dataclass.
        HandlerUnavailable: The payload type is a WebAssembly module's, which
            Python handlers cannot take yet.
    """
    policy = HandlerPolicy(trusted_python_prefixes=trusted_prefixes)
    target = _import(listener, listener.handler, policy, "handler")
    if not callable(target):
        msg = (
            f"listener {listener.name}: handler {listener.handler!r} is a "
            f"{type(target).__name__}, not a function"
        )
        raise HandlerLoadFailed(
            msg,
            expected="async function",
            got=type(target).__name__,
            where=listener.name,
        )
    return PythonHandler(listener, target, _argument_maker(listener, organism, policy))


def _is_async(target: Callable[..., Any]) -> bool:
    # The validator's test, so that objects with an async __call__ count too.
    call = type(target).__call__
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(call)


def replies_from(result: object, *, listener: str) -> list[Reply]:
    """Turn a handler's return value into replies.

    Args:
        result: What the handler returned.
        listener: The listener's name, for error messages.

    Returns:
        No reply for ``None``; otherwise one per response, in order.

    Raises:
        InvalidReturn: ``result`` is not ``None``, a response, or a list or
            tuple of responses. Bytes are refused: xml-pipeline's legacy raw
            envelopes would let a handler forge ``from`` and ``thread``.
    """
    if result is None:
        return []
    if isinstance(result, bytes | bytearray | memoryview):
        msg = (
            f"listener {listener} returned bytes; raw envelopes are never accepted, "
            f"{_CONTRACT}"
        )
        raise InvalidReturn(msg, expected=_CONTRACT, got="bytes", where=listener)
    if isinstance(result, list | tuple):
        return [
            _reply(item, listener, f"{listener}[{index}]")
            for index, item in enumerate(result)
        ]
    return [_reply(result, listener, listener)]


# --- replies -----------------------------------------------------------------------


def _reply(item: object, listener: str, where: str) -> Reply:
    parts = _response_parts(item)
    if parts is None:
        msg = f"listener {listener} returned {_describe(item)}; {_CONTRACT}"
        raise InvalidReturn(msg, expected=_CONTRACT, got=_describe(item), where=where)
    payload, to, is_response = parts
    if is_response:
        # Nextra's respond() leaves ``to`` empty and xml-pipeline's sets a marker
        # object; a name here means the response was built by hand both ways.
        if isinstance(to, str):
            msg = (
                f"listener {listener} returned a response that is both a respond "
                f"and a forward to {to!r}; use HandlerResponse.respond(payload) or "
                "HandlerResponse(payload, to=name)"
            )
            raise InvalidReturn(msg, expected="one of them", got=to, where=where)
        return Reply(
            kind="respond",
            to=None,
            payload_type=type(payload).__name__,
            payload=_payload_data(payload, listener, where),
        )
    if not isinstance(to, str) or not to.strip():
        msg = (
            f"listener {listener} returned a forward without a target (to={to!r}); "
            "name the listener in HandlerResponse(payload, to=name), or use "
            "HandlerResponse.respond(payload) to answer the caller"
        )
        raise InvalidReturn(msg, expected="a listener name", got=repr(to), where=where)
    return Reply(
        kind="forward",
        to=to,
        payload_type=type(payload).__name__,
        payload=_payload_data(payload, listener, where),
    )


def _response_parts(item: object) -> tuple[Any, Any, bool] | None:
    if isinstance(item, HandlerResponse):
        return item.payload, item.to, item.is_response
    # xml-pipeline 0.4.0's own HandlerResponse, recognised by its shape so that
    # xml-pipeline need not be installed: a dataclass of ``payload`` and ``to``,
    # where ``to`` is a name or a marker object, and an ``is_response`` property
    # that is true for the marker.
    if (
        type(item).__name__ == "HandlerResponse"
        and dataclasses.is_dataclass(item)
        and not isinstance(item, type)
        and hasattr(item, "payload")
        and hasattr(item, "to")
    ):
        is_response = getattr(item, "is_response", None)
        if isinstance(is_response, bool):
            return item.payload, item.to, is_response
    return None


def _payload_data(payload: object, listener: str, where: str) -> dict[str, Any]:
    is_instance = isinstance(payload, msgspec.Struct) or (
        dataclasses.is_dataclass(payload) and not isinstance(payload, type)
    )
    if not is_instance:
        msg = (
            f"listener {listener} returned a response whose payload is "
            f"{_describe(payload)}; a payload is an instance of a payload class "
            "(a dataclass, such as one made with @nextra.sdk.payload or @xmlify)"
        )
        raise InvalidReturn(
            msg, expected="a dataclass instance", got=_describe(payload), where=where
        )
    try:
        data = msgspec.to_builtins(_plain(payload))
    except (TypeError, ValueError) as error:
        msg = (
            f"listener {listener} returned a {type(payload).__name__} that cannot "
            f"be carried as JSON: {error}"
        )
        raise InvalidReturn(
            msg, expected="JSON-shaped fields", got=str(error), where=where
        ) from error
    if not isinstance(data, dict):
        msg = (
            f"listener {listener} returned a {type(payload).__name__} that does not "
            f"become a JSON object (it becomes {type(data).__name__})"
        )
        raise InvalidReturn(
            msg, expected="object", got=type(data).__name__, where=where
        )
    return data


def _describe(value: object) -> str:
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        text = repr(value)
        return f"{type(value).__name__} {text[:40]}"
    return "None" if value is None else f"a {type(value).__name__}"


# --- payload classes ---------------------------------------------------------------


def _argument_maker(
    listener: Listener, organism: Organism, policy: HandlerPolicy
) -> Callable[[dict[str, Any]], Any]:
    source = listener.payload_source
    if source == "python":
        cls = _import(listener, listener.payload_class, policy, "payload_class")
        if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
            msg = (
                f"listener {listener.name}: payload_class {listener.payload_class!r} "
                "is not a dataclass"
            )
            raise HandlerLoadFailed(
                msg, expected="dataclass", got=repr(cls), where=listener.name
            )
        return functools.partial(_converted, cls)
    if source == "wasm":
        msg = (
            f"listener {listener.name}: Python handlers taking a WebAssembly "
            f"module's payload type ({listener.payload_class!r}) arrive in a later "
            "version of Nextra"
        )
        raise HandlerUnavailable(
            msg, expected="declared or built-in", got=source, where=listener.name
        )
    payload_type = resolve_payload_type(listener.payload_type, organism)
    if payload_type is None:
        msg = (
            f"listener {listener.name}: payload type {listener.payload_type!r} is "
            "neither declared in the flow nor built in"
        )
        raise HandlerLoadFailed(
            msg, expected="a known type", got=listener.payload_type, where=listener.name
        )
    alias = _xml_pipeline_class(listener.payload_class)
    if alias is not None:
        return functools.partial(_checked_then_converted, payload_type, alias)
    classes = _classes_for(organism.payloads)
    # Made now, so that a type Python cannot express (two fields that both
    # become ``from_``, say) fails at load time, not per message.
    try:
        classes.cls(payload_type.name)
    except (TypeError, ValueError) as error:
        msg = (
            f"listener {listener.name}: payload type {payload_type.name!r} cannot "
            f"be made a Python class ({error})"
        )
        raise HandlerLoadFailed(
            msg, expected="a dataclass", got=str(error), where=listener.name
        ) from error
    return functools.partial(classes.build_payload, payload_type)


def _import(
    listener: Listener, reference: str, policy: HandlerPolicy, what: str
) -> Any:
    if ":" in reference:
        msg = (
            f"listener {listener.name}: {what} {reference!r} uses the "
            "module:attribute form, which the validator refuses; write "
            f"{reference.replace(':', '.')!r}"
        )
        raise HandlerLoadFailed(
            msg, expected="package.module.name", got=reference, where=listener.name
        )
    if not policy.trusts(reference):
        prefixes = ", ".join(policy.trusted_python_prefixes) or "none"
        msg = (
            f"listener {listener.name}: {what} {reference!r} is not under a trusted "
            f"module prefix (trusted: {prefixes})"
        )
        raise HandlerLoadFailed(
            msg, expected=prefixes, got=reference, where=listener.name
        )
    module_name, _, attribute = reference.rpartition(".")
    try:
        module = importlib.import_module(module_name)
        return getattr(module, attribute)
    except Exception as error:  # trusted code may fail any way; re-raised below
        msg = (
            f"listener {listener.name}: {what} {reference!r} cannot be loaded "
            f"({type(error).__name__}: {error})"
        )
        raise HandlerLoadFailed(
            msg, expected="an importable name", got=reference, where=listener.name
        ) from error


def _xml_pipeline_class(reference: str) -> type | None:
    # Handlers written for xml-pipeline may check isinstance against its own
    # TextInput; give them that class when xml-pipeline is installed, and
    # Nextra's fields-alike class otherwise.
    if reference not in PAYLOAD_ALIASES:
        return None
    module_name, _, attribute = reference.rpartition(".")
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    cls = getattr(module, attribute, None)
    return cls if isinstance(cls, type) and dataclasses.is_dataclass(cls) else None


def _converted(cls: type, data: dict[str, Any]) -> Any:
    # strict=True: a str field takes only a str, and keeps it as sent ("007"
    # stays "007"), where xml-pipeline's lxml inference rewrote such values.
    try:
        return msgspec.convert(data, cls, strict=True)
    except msgspec.ValidationError as error:
        raise _payload_error(cls.__name__, error) from error


def _checked_then_converted(
    payload_type: PayloadType, cls: type, data: dict[str, Any]
) -> Any:
    return _converted(cls, validate_payload(data, payload_type, None))


_MSGSPEC_PATH = re.compile(r"(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)


def _payload_error(type_name: str, error: msgspec.ValidationError) -> PayloadInvalid:
    match = _MSGSPEC_PATH.fullmatch(str(error))
    problem = match["problem"] if match else str(error)
    path = (match["path"] or "").removeprefix(".") if match else ""
    place = f"{type_name}.{path}" if path else type_name
    msg = f"{place}: {problem[:1].lower()}{problem[1:]}"
    return PayloadInvalid(msg, expected=type_name, where=path or None)


class _Declared:
    """Base of the dataclasses made for declared and built-in payload types."""

    __slots__ = ()
    # (attribute, field name, type) per field; the attribute differs from the
    # field name only for Python keywords (``from`` becomes ``from_``).
    _nextra_fields: ClassVar[tuple[tuple[str, str, TypeRef], ...]] = ()


class _FlowClasses:
    """Dataclasses for the payload types one set of declarations names."""

    def __init__(self, declared: tuple[PayloadType, ...]) -> None:
        self.organism = Organism(name="payload-classes", payloads=declared)
        self.made: dict[str, type | None] = {}

    def cls(self, name: str) -> type | None:
        """The class for type ``name``; ``None`` when values stay plain dicts."""
        if name in self.made:
            return self.made[name]
        payload_type = resolve_payload_type(name, self.organism)
        if payload_type is None or payload_type.source in ("python", "wasm"):
            self.made[name] = None
            return None
        ready = BUILTIN_PAYLOAD_CLASSES.get(name)
        if payload_type.source == "builtin" and ready is not None:
            self.made[name] = ready
            return ready
        # A placeholder first: the validator refuses recursive types, and this
        # keeps a recursive one from recursing forever if it ever gets here.
        self.made[name] = None
        fields = [
            (_attribute(field.name), field.name, field.type)
            for field in payload_type.fields
        ]
        made = dataclasses.make_dataclass(
            name,
            [(attribute, self.annotation(ref)) for attribute, _, ref in fields],
            bases=(_Declared,),
            namespace={"__module__": __name__, "_nextra_fields": tuple(fields)},
            slots=True,
        )
        self.made[name] = made
        return made

    def annotation(self, ref: TypeRef) -> Any:
        # For reading only: instances are built by build(), not from annotations.
        simple: dict[str, Any] = {"str": str, "int": int, "float": float, "bool": bool}
        if ref.kind in simple:
            return simple[ref.kind]
        item = ref.item if ref.item is not None else TypeRef(kind="str")
        if ref.kind == "list":
            return list[self.annotation(item)]  # type: ignore[misc]
        if ref.kind == "dict":
            return dict[str, self.annotation(item)]  # type: ignore[misc]
        if ref.kind == "optional":
            return self.annotation(item) | None
        made = self.cls(ref.name or "")
        return made if made is not None else dict[str, Any]

    def build_payload(self, payload_type: PayloadType, data: dict[str, Any]) -> Any:
        """Check ``data`` and build the type's instance from it."""
        checked = validate_payload(data, payload_type, self.organism)
        return self.build(checked, TypeRef(kind="named", name=payload_type.name))

    def build(self, value: Any, ref: TypeRef) -> Any:
        """Build the value of type ``ref`` from checked data; strings untouched."""
        if value is None:
            return None
        item = ref.item if ref.item is not None else TypeRef(kind="str")
        if ref.kind == "optional":
            return self.build(value, item)
        if ref.kind == "list":
            return [self.build(element, item) for element in value]
        if ref.kind == "dict":
            return {key: self.build(element, item) for key, element in value.items()}
        if ref.kind != "named":
            return value
        made = self.cls(ref.name or "")
        if made is None:
            return dict(value)
        fields: tuple[tuple[str, str, TypeRef], ...] = getattr(
            made, "_nextra_fields", ()
        )
        if not fields:
            # A built-in type's ready class: its fields are the type's own.
            return made(**value)
        return made(
            **{
                attribute: self.build(value[name], field_ref)
                for attribute, name, field_ref in fields
            }
        )


@functools.lru_cache(maxsize=256)
def _classes_for(declared: tuple[PayloadType, ...]) -> _FlowClasses:
    # One set of classes per set of declarations, shared by the listeners of a
    # flow (and by flows declaring the same types); bounded for long-lived
    # workers that load many flows.
    return _FlowClasses(declared)


def _attribute(field: str) -> str:
    return f"{field}_" if keyword.iskeyword(field) else field


def _plain(value: Any) -> Any:
    # Made classes may rename a keyword field; give the field its own name back.
    # Everything else is left to msgspec.to_builtins.
    if isinstance(value, _Declared):
        return {
            name: _plain(getattr(value, attribute))
            for attribute, name, _ in value._nextra_fields
        }
    if isinstance(value, list | tuple):
        return [_plain(element) for element in value]
    if isinstance(value, dict):
        return {key: _plain(element) for key, element in value.items()}
    return value
