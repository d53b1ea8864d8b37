"""Maps stored type names and versions to Structs, upcasting old shapes on read."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from nextra.events.base import Event
from nextra.kernel.errors import EventContractError

__all__ = ("EventRegistry", "Upcaster")

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the JSON object of version N of an event into version N + 1."""


class EventRegistry:
    """The set of event types one deployment reads and writes.

    Encoding uses one shared encoder; decoding keeps one decoder per type. Events
    stored at an older version are decoded to a plain object, passed through
    each upcaster in turn, and converted to the current Struct.
    """

    def __init__(self, types: Iterable[type[Event]] = ()) -> None:
        self._types: dict[str, type[Event]] = {}
        self._decoders: dict[str, msgspec.json.Decoder[Any]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._encoder = msgspec.json.Encoder()
        for event_type in types:
            self.register(event_type)

    def register(self, event_type: type[Event]) -> None:
        name = getattr(event_type, "type_name", None)
        if not isinstance(name, str) or not name:
            message = f"{event_type.__qualname__} has no type_name"
            raise EventContractError(message, where=event_type.__qualname__)
        existing = self._types.get(name)
        if existing is not None and existing is not event_type:
            message = (
                f"event type name {name!r} is already used by "
                f"{existing.__qualname__}; choose a new name for "
                f"{event_type.__qualname__}"
            )
            raise EventContractError(message, got=name, where=event_type.__qualname__)
        if event_type.schema_version < 1:
            message = f"{name} schema_version must be 1 or more"
            raise EventContractError(
                message, expected=">= 1", got=event_type.schema_version, where=name
            )
        self._types[name] = event_type
        self._decoders[name] = msgspec.json.Decoder(event_type)

    def upcaster(
        self, type_name: str, from_version: int
    ) -> Callable[[Upcaster], Upcaster]:
        """Register a function lifting ``type_name`` from ``from_version`` by one."""

        def decorate(function: Upcaster) -> Upcaster:
            self._upcasters[(type_name, from_version)] = function
            return function

        return decorate

    def types(self) -> list[type[Event]]:
        return sorted(self._types.values(), key=lambda t: t.type_name)

    def has_upcaster(self, type_name: str, from_version: int) -> bool:
        return (type_name, from_version) in self._upcasters

    def resolve(self, type_name: str) -> type[Event]:
        try:
            return self._types[type_name]
        except KeyError:
            message = (
                f"unknown event type {type_name!r}: no Struct is registered for it"
            )
            raise EventContractError(message, got=type_name) from None

    def encode(self, event: Event) -> bytes:
        registered = self._types.get(event.type_name)
        if registered is not type(event):
            message = f"event {type(event).__qualname__} is not registered"
            raise EventContractError(message, where=event.type_name)
        return self._encoder.encode(event)

    def decode(self, type_name: str, version: int, data: bytes) -> Event:
        """Decode a stored event, upcasting it to the current version.

        Raises:
            EventContractError: The type is unknown, the version is newer than this
                code knows, an upcaster is missing, or the data does not fit.
        """
        event_type = self.resolve(type_name)
        current = event_type.schema_version

        if version == current:
            try:
                decoded: Event = self._decoders[type_name].decode(data)
                return decoded
            except msgspec.ValidationError as error:
                message = f"stored {type_name} v{version} does not decode: {error}"
                raise EventContractError(message, where=type_name) from None
        if version > current:
            message = (
                f"{type_name} v{version} was written by newer code; this reader "
                f"knows up to v{current}"
            )
            raise EventContractError(
                message, expected=f"<= {current}", got=version, where=type_name
            )

        shape: dict[str, Any] = msgspec.json.decode(data)
        for step in range(version, current):
            upcast = self._upcasters.get((type_name, step))
            if upcast is None:
                message = f"no upcaster for {type_name} from v{step} to v{step + 1}"
                raise EventContractError(message, where=type_name)
            shape = upcast(shape)
        try:
            return msgspec.convert(shape, event_type)
        except msgspec.ValidationError as error:
            message = (
                f"{type_name} upcast from v{version} does not fit v{current}: {error}"
            )
            raise EventContractError(message, where=type_name) from None
