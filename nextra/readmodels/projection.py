"""What a projection is: a fold of events into tables, declared in ``projections/``."""

from __future__ import annotations

import importlib
import tomllib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import msgspec
from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncConnection

from nextra.events.envelope import RecordedEvent
from nextra.kernel.errors import ConfigurationError

__all__ = ("Projection", "ProjectionSpec", "load_catalogue")


class Projection(ABC):
    """Turns recorded events into rows.

    ``apply`` runs inside the transaction that also moves the checkpoint, and is
    given only events past it, in stream order. It must depend on nothing but the
    events and the rows it wrote before, so that a rebuild from the first event
    gives the same tables.
    """

    tables: Sequence[Table] = ()

    @abstractmethod
    async def apply(
        self, connection: AsyncConnection, events: Sequence[RecordedEvent]
    ) -> None:
        """Apply a batch of events to the projection's tables."""


class ProjectionSpec(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """One entry of the projection catalogue (``projections/<name>.toml``).

    Raising ``version`` means the projection's meaning changed: rebuild it.
    """

    name: Annotated[str, msgspec.Meta(pattern=r"^[a-z][a-z0-9_]{0,62}$")]
    version: Annotated[int, msgspec.Meta(ge=1)]
    code: str
    """``module:Class`` of the :class:`Projection`."""
    subject: str
    """Which events it consumes, as a subject filter."""
    description: str = ""
    linger_ms: Annotated[int, msgspec.Meta(ge=0, le=1000)] = 0
    """After a batch smaller than the batch size, wait this long before fetching
    the next one. Every batch is a transaction with an fsynced commit, so under
    steady moderate load a projection that takes events a few at a time spends
    most of its work on commits; lingering lets them arrive together. Its read
    model then trails the stream by up to this much more."""

    def create(self) -> Projection:
        module_name, _, class_name = self.code.partition(":")
        if not module_name.startswith("nextra."):
            message = f"projection {self.name}: code must live under nextra., got {self.code!r}"
            raise ConfigurationError(message, where=f"projections/{self.name}.toml")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            message = f"projection {self.name}: cannot load {self.code!r}: {error}"
            raise ConfigurationError(
                message, where=f"projections/{self.name}.toml"
            ) from None
        projection: Projection = cls()
        return projection


def load_catalogue(directory: Path) -> list[ProjectionSpec]:
    """Every projection declared in ``directory``, by name."""
    if not directory.is_dir():
        message = f"projection catalogue {directory} does not exist"
        raise ConfigurationError(message, where="NEXTRA_PROJECTIONS_DIR")
    specs = []
    for path in sorted(directory.glob("*.toml")):
        try:
            spec = msgspec.convert(tomllib.loads(path.read_text()), ProjectionSpec)
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
            message = f"projection catalogue {path.name}: {error}"
            raise ConfigurationError(message, where=str(path)) from None
        specs.append(spec)
    return specs
