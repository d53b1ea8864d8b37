"""The built-in payload types as dataclasses that Python handlers receive and build."""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

__all__ = ("BUILTIN_PAYLOAD_CLASSES", "SystemError", "TextInput", "TextOutput")

# Field names, order and defaults are xml-pipeline 0.4.0's, so handlers written
# for it construct these the same way; the catalogue's types list the same fields
# (a test keeps them in step). The defaults only help handlers build replies:
# a payload arriving over the wire must carry every field.


@dataclass(slots=True)
class TextInput:
    """Text from outside the flow: a person, a webhook, an API call.

    Attributes:
        text: The message.
        source: Where it came from (``console``, ``webhook``, ``api``...).
        user: Who sent it, when known, else ``""``.
    """

    text: str
    source: str = "console"
    user: str = ""


@dataclass(slots=True)
class TextOutput:
    """Text going back out of the flow.

    Attributes:
        text: The message.
        status: ``ok``, ``error`` or ``pending``.
    """

    text: str
    status: str = "ok"


@dataclass(slots=True)
class SystemError:  # shadows the builtin on purpose: flows route by this name
    """A refusal the runtime reports to an agent so that it may try again.

    Attributes:
        code: A generic reason (``routing``, ``validation``, ``timeout``).
        message: What went wrong, without revealing the flow's topology.
        retry_allowed: Whether trying again can help.
    """

    code: str
    message: str
    retry_allowed: bool = True


BUILTIN_PAYLOAD_CLASSES: MappingProxyType[str, type] = MappingProxyType(
    {cls.__name__: cls for cls in (TextInput, TextOutput, SystemError)}
)
"""The built-in payload types that have a class here, by type name."""
