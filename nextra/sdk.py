"""What handler authors import: the handler contract, built-in types, ``@payload``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TypeVar, dataclass_transform, overload

from nextra.domain.flows.typeexpr import TYPE_NAME
from nextra.domain.runs.builtin_payloads import SystemError, TextInput, TextOutput
from nextra.domain.runs.contract import HandlerMetadata, HandlerResponse, ThreadMessage

__all__ = (
    "HandlerMetadata",
    "HandlerResponse",
    "SystemError",
    "TextInput",
    "TextOutput",
    "ThreadMessage",
    "payload",
)

_T = TypeVar("_T")


@overload
def payload(cls: type[_T], /) -> type[_T]: ...


@overload
def payload(*, frozen: bool = False) -> Callable[[type[_T]], type[_T]]: ...


@dataclass_transform()
def payload(
    cls: type[_T] | None = None, /, *, frozen: bool = False
) -> type[_T] | Callable[[type[_T]], type[_T]]:
    """Make a class a payload type: Nextra's counterpart of xml-pipeline's ``@xmlify``.

    The class becomes a dataclass whose fields, in order, are the payload's
    fields; its name is the payload type's name, which routing matches, so it
    must be PascalCase. Use it bare (``@payload``) or as ``@payload(frozen=True)``.

    Raises:
        TypeError: The class name is not a PascalCase type name.
    """

    def make(target: type[_T]) -> type[_T]:
        if not TYPE_NAME.fullmatch(target.__name__):
            msg = (
                f"payload type name {target.__name__!r} must be PascalCase (a "
                "capital letter, then letters and digits): routing matches on it"
            )
            raise TypeError(msg)
        return dataclasses.dataclass(frozen=frozen)(target)

    return make if cls is None else make(cls)
