"""Stream definitions as reviewed files, and making a server match them.

Each ``streams/*.toml`` file declares one stream. :func:`plan_streams` compares
them with what the server holds; :func:`apply_streams` creates or updates streams
to match. A change the server cannot make in place (storage, retention, turning
off an irreversible flag) is a :class:`StreamConflict` naming stream and setting.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from nextra.kernel.errors import ConfigurationError, StreamConflict

__all__ = (
    "StreamChange",
    "StreamDefinition",
    "apply_streams",
    "load_stream_definitions",
    "plan_streams",
)

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h|d)$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


class StreamDefinition(
    msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True
):
    """One stream as its reviewed file states it."""

    name: Annotated[str, msgspec.Meta(pattern=r"^[A-Za-z0-9_-]+$")]
    description: str = ""
    subjects: list[str]
    storage: Literal["file", "memory"] = "file"
    retention: Literal["limits", "interest", "workqueue"] = "limits"
    discard: Literal["old", "new"] = "old"
    replicas: Annotated[int, msgspec.Meta(ge=1, le=5)] = 1
    duplicate_window: str = "2m"
    max_msg_size: int = -1
    max_age: str = "0s"
    max_consumers: Annotated[int, msgspec.Meta(ge=1)] | None = None
    """Consumers the stream allows; ``None`` leaves the server's default (since
    nats-server 2.15, 1,000 per stream, and "unlimited" can no longer be asked for)."""
    allow_atomic: bool = False
    allow_direct: bool = False
    allow_msg_ttl: bool = False
    deny_delete: bool = False
    deny_purge: bool = False
    source: str = ""
    """The file the definition came from, for messages."""

    def to_config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            description=self.description or None,
            subjects=list(self.subjects),
            storage=StorageType(self.storage),
            retention=RetentionPolicy(self.retention),
            discard=DiscardPolicy(self.discard),
            num_replicas=self.replicas,
            duplicate_window=_seconds(self.duplicate_window),
            max_msg_size=self.max_msg_size,
            max_age=_seconds(self.max_age),
            max_consumers=self.max_consumers,
            allow_atomic=self.allow_atomic,
            allow_direct=self.allow_direct,
            allow_msg_ttl=self.allow_msg_ttl or None,
            deny_delete=self.deny_delete,
            deny_purge=self.deny_purge,
        )

    def settings(self) -> dict[str, Any]:
        """The settings compared with the server, in the file's words and units.

        A setting the file leaves to the server is not compared.
        """
        stated = (
            {} if self.max_consumers is None else {"max_consumers": self.max_consumers}
        )
        return stated | {
            "subjects": sorted(self.subjects),
            "description": self.description,
            "storage": self.storage,
            "retention": self.retention,
            "discard": self.discard,
            "replicas": self.replicas,
            "duplicate_window": _seconds(self.duplicate_window),
            "max_msg_size": self.max_msg_size,
            "max_age": _seconds(self.max_age),
            "allow_atomic": self.allow_atomic,
            "allow_direct": self.allow_direct,
            "allow_msg_ttl": self.allow_msg_ttl,
            "deny_delete": self.deny_delete,
            "deny_purge": self.deny_purge,
        }


class StreamChange(msgspec.Struct, frozen=True, kw_only=True):
    """What applying one definition would do.

    Attributes:
        action: ``create``, ``update`` or ``none``.
        differences: Setting name to ``(server value, file value)``.
    """

    stream: str
    action: Literal["create", "update", "none"]
    differences: dict[str, tuple[Any, Any]] = {}


# Settings the server cannot change on an existing stream, or not back.
_IMMUTABLE = {"storage", "retention"}
_ONE_WAY = {"allow_msg_ttl"}


def _seconds(value: str) -> float:
    match = _DURATION.match(value.strip())
    if match is None:
        message = f"duration {value!r} must look like 500ms, 30s, 2m, 1h or 7d"
        raise ConfigurationError(message, expected="<number><ms|s|m|h|d>", got=value)
    return float(match.group(1)) * _UNITS[match.group(2)]


def load_stream_definitions(directory: Path) -> list[StreamDefinition]:
    """Parse every ``*.toml`` file in ``directory``.

    Raises:
        ConfigurationError: A file is missing, not TOML, or states an unknown or
            invalid setting; the message names the file and the setting.
    """
    if not directory.is_dir():
        message = f"stream definitions directory {directory} does not exist"
        raise ConfigurationError(message, where="NEXTRA_STREAMS_DIR")
    definitions = []
    for path in sorted(directory.glob("*.toml")):
        try:
            raw = tomllib.loads(path.read_text())
            definition = msgspec.convert({**raw, "source": str(path)}, StreamDefinition)
            definition.settings()  # durations are checked here, with the file named
        except (tomllib.TOMLDecodeError, msgspec.ValidationError) as error:
            message = f"stream definition {path.name}: {error}"
            raise ConfigurationError(message, where=str(path)) from None
        except ConfigurationError as error:
            message = f"stream definition {path.name}: {error.message}"
            raise ConfigurationError(message, where=str(path)) from None
        definitions.append(definition)
    names = [definition.name for definition in definitions]
    if len(set(names)) != len(names):
        message = f"two stream definitions in {directory} share a name: {sorted(names)}"
        raise ConfigurationError(message, where=str(directory))
    return definitions


def _server_settings(config: StreamConfig) -> dict[str, Any]:
    def value(enum_or_none: Any) -> Any:
        return getattr(enum_or_none, "value", enum_or_none)

    return {
        "subjects": sorted(config.subjects or []),
        "description": config.description or "",
        "storage": value(config.storage),
        "retention": value(config.retention),
        "discard": value(config.discard),
        "replicas": config.num_replicas or 1,
        "duplicate_window": float(config.duplicate_window or 0),
        "max_msg_size": config.max_msg_size if config.max_msg_size is not None else -1,
        "max_age": float(config.max_age or 0),
        "max_consumers": config.max_consumers,
        "allow_atomic": bool(config.allow_atomic),
        "allow_direct": bool(config.allow_direct),
        "allow_msg_ttl": bool(config.allow_msg_ttl),
        "deny_delete": bool(config.deny_delete),
        "deny_purge": bool(config.deny_purge),
    }


async def plan_streams(
    js: JetStreamContext, definitions: list[StreamDefinition]
) -> list[StreamChange]:
    """Compare definitions with the server, changing nothing.

    Raises:
        StreamConflict: An existing stream differs in a setting that cannot be
            changed in place.
    """
    changes = []
    for definition in definitions:
        try:
            info = await js.stream_info(definition.name)
        except nats.js.errors.NotFoundError:
            changes.append(StreamChange(stream=definition.name, action="create"))
            continue

        wanted = definition.settings()
        actual = _server_settings(info.config)
        differences = {
            key: (actual[key], wanted[key])
            for key in wanted
            if actual[key] != wanted[key]
        }
        for key in differences.keys() & _IMMUTABLE:
            _conflict(definition, key, differences[key], "it cannot change in place")
        for key in differences.keys() & _ONE_WAY:
            if actual[key] and not wanted[key]:
                _conflict(definition, key, differences[key], "it cannot be turned off")
        action: Literal["update", "none"] = "update" if differences else "none"
        changes.append(
            StreamChange(stream=definition.name, action=action, differences=differences)
        )
    return changes


def _conflict(
    definition: StreamDefinition, key: str, values: tuple[Any, Any], why: str
) -> None:
    server, file = values
    message = (
        f"stream {definition.name} has {key}={server!r} on the server but "
        f"{key}={file!r} in {Path(definition.source).name}, and {why}; "
        f"migrate the stream by hand or restore the setting"
    )
    raise StreamConflict(
        message, expected=file, got=server, where=f"{definition.name}.{key}"
    )


async def apply_streams(
    js: JetStreamContext, definitions: list[StreamDefinition], *, dry_run: bool = False
) -> list[StreamChange]:
    """Create or update streams so the server matches the definitions.

    Idempotent: a second run reports ``none`` for every stream.
    """
    changes = await plan_streams(js, definitions)
    if dry_run:
        return changes
    by_name = {definition.name: definition for definition in definitions}
    for change in changes:
        config = by_name[change.stream].to_config()
        try:
            if change.action == "create":
                await js.add_stream(config)
            elif change.action == "update":
                await js.update_stream(config)
        except nats.js.errors.APIError as error:
            message = (
                f"the server refused to {change.action} stream {change.stream}: "
                f"{error.description}"
            )
            raise StreamConflict(message, where=change.stream) from error
    return changes
