"""The base every event Struct derives from."""

from __future__ import annotations

from typing import ClassVar

import msgspec

__all__ = ("Event",)


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """Something that happened, named in the past tense.

    Subclasses set ``type_name``, a stable dotted name that is stored with every
    event and must never be reused for another shape, and ``schema_version``,
    raised by one whenever the stored shape changes (with an upcaster from the
    previous version registered beside it). Renaming the Python class changes
    nothing stored.

    Unknown fields are ignored on decode so that an older reader can skip fields a
    newer writer added.
    """

    type_name: ClassVar[str]
    schema_version: ClassVar[int] = 1
