"""One settings object, read from ``NEXTRA_*`` variables and an optional TOML file."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

import msgspec

from nextra.kernel.errors import ConfigurationError

__all__ = ("ENV_PREFIX", "Settings", "load_settings", "project_root")

ENV_PREFIX = "NEXTRA_"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
PositiveFloat = Annotated[float, msgspec.Meta(gt=0)]
PositiveInt = Annotated[int, msgspec.Meta(gt=0)]


def project_root() -> Path:
    """The checkout Nextra runs from: where ``streams/`` and ``migrations/`` live."""
    return Path(__file__).resolve().parents[2]


class Settings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Everything a Nextra process can be told at start.

    Each field is read from ``NEXTRA_<FIELD>`` (upper case) or from the same key in
    the TOML file named by ``NEXTRA_CONFIG``; the environment wins.
    """

    nats_url: str | None = None
    """JetStream server to use; unset means ``nextra dev`` starts an embedded one."""
    database_url: str | None = None
    """PostgreSQL for the read models; unset means ``nextra dev`` starts one."""
    data_dir: str = ".nextra"
    """Where ``nextra dev`` keeps the embedded servers' data."""
    api_host: str = "127.0.0.1"
    api_port: Port = 8080
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    streams_dir: str | None = None
    """Stream definitions; defaults to ``streams/`` of the checkout."""
    projections_dir: str | None = None
    """Projection catalogue; defaults to ``projections/`` of the checkout."""
    connect_timeout: PositiveFloat = 5.0
    """Seconds to wait for NATS or Postgres before giving up with a clear error."""
    append_timeout: PositiveFloat = 5.0
    """Seconds an append waits for the server's acknowledgement."""
    projector_batch_size: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 500
    read_your_writes_timeout: PositiveFloat = 5.0
    """Longest a query waits for a projection to pass a sequence it was given."""
    auth_cache_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 5.0
    """Longest an API process uses a verified API key, member role or tier without
    asking Postgres again; the tenant's events drop them sooner. ``0``: never."""
    service_name: str = "nextra"
    clerk_jwks_url: str | None = None
    """Where Clerk publishes the keys of its session tokens; unset: API keys only."""
    clerk_issuer: str | None = None
    """The ``iss`` Clerk session tokens must carry (your Clerk frontend API URL)."""
    clerk_audience: str | None = None
    clerk_authorized_parties: tuple[str, ...] = ()
    """Origins allowed in a token's ``azp``; comma-separated in the environment."""
    clerk_webhook_secret: str | None = None
    """The ``whsec_...`` signing secret of Clerk's webhook endpoint."""
    trusted_handler_modules: tuple[str, ...] = ()
    """Python module prefixes whose handlers flows may name (self-hosting only);
    comma-separated in the environment. The hosted default trusts none."""
    worker_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 64
    """Run events one worker process works on at once."""
    worker_min_concurrency: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 4
    """The fewest run events a worker keeps taking while its event loop lags;
    at or over ``worker_concurrency`` pacing is off (see docs/runs.md)."""
    worker_ack_wait: PositiveFloat = 30.0
    """Seconds before a step a worker took and did not finish is handed to
    another worker (workers extend it while a handler runs)."""
    worker_max_deliver: Annotated[int, msgspec.Meta(ge=2, le=100)] = 5
    """Deliveries of a step before its run fails as poison."""
    worker_retire_interval: PositiveFloat = 60.0
    """Seconds between a worker's looks for idle work consumers of flows deleted
    at least that long ago, which it removes."""
    worker_shutdown_grace: PositiveFloat = 30.0
    """Seconds a stopping worker lets the steps in hand finish; those still
    running then are stopped and given back to other workers at once."""

    def __post_init__(self) -> None:
        if self.nats_url is not None:
            _check_url("nats_url", self.nats_url, {"nats", "tls", "ws", "wss"})
        if self.clerk_jwks_url is not None and not self.clerk_issuer:
            message = "NEXTRA_CLERK_ISSUER must be set with NEXTRA_CLERK_JWKS_URL"
            raise ConfigurationError(message, where="NEXTRA_CLERK_ISSUER")
        if self.database_url is not None:
            _check_url(
                "database_url",
                self.database_url,
                {"postgres", "postgresql", "postgresql+asyncpg"},
            )

    @property
    def streams_path(self) -> Path:
        return (
            Path(self.streams_dir) if self.streams_dir else project_root() / "streams"
        )

    @property
    def projections_path(self) -> Path:
        if self.projections_dir:
            return Path(self.projections_dir)
        return project_root() / "projections"

    def with_servers(self, *, nats_url: str, database_url: str) -> Settings:
        """A copy pointing at the given servers (used once embedded ones are up)."""
        return msgspec.structs.replace(
            self, nats_url=nats_url, database_url=database_url
        )


def _check_url(field: str, url: str, schemes: set[str]) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in schemes:
        variable = ENV_PREFIX + field.upper()
        message = (
            f"{variable} must be a URL with one of the schemes "
            f"{', '.join(sorted(schemes))}, got {url.split('@')[-1]!r}"
        )
        raise ConfigurationError(
            message, expected=sorted(schemes), got=scheme or None, where=variable
        )


def load_settings(
    environ: Mapping[str, str] | None = None, **overrides: Any
) -> Settings:
    """Read, merge and validate settings.

    Args:
        environ: Variables to read instead of ``os.environ`` (tests pass their own).
        overrides: Values that win over both file and environment (CLI flags).

    Raises:
        ConfigurationError: A value is missing, unknown or of the wrong shape; the
            message names the variable or file key.
    """
    environ = os.environ if environ is None else environ
    raw: dict[str, Any] = {}

    config_file = environ.get(ENV_PREFIX + "CONFIG")
    if config_file:
        raw.update(_read_file(Path(config_file)))

    known = set(Settings.__struct_fields__)
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        field = name.removeprefix(ENV_PREFIX).lower()
        if field in known and value != "":
            raw[field] = value
    for listed in ("trusted_handler_modules", "clerk_authorized_parties"):
        text = raw.get(listed)
        if isinstance(text, str):
            raw[listed] = [item.strip() for item in text.split(",") if item.strip()]
    raw.update({key: value for key, value in overrides.items() if value is not None})

    try:
        return msgspec.convert(raw, Settings, strict=False)
    except msgspec.ValidationError as error:
        raise _explain(error, raw) from None


def _read_file(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        message = f"NEXTRA_CONFIG names {path}, which does not exist"
        raise ConfigurationError(message, where="NEXTRA_CONFIG") from None
    except tomllib.TOMLDecodeError as error:
        message = f"NEXTRA_CONFIG file {path} is not valid TOML: {error}"
        raise ConfigurationError(message, where=str(path)) from None


def _explain(error: msgspec.ValidationError, raw: dict[str, Any]) -> ConfigurationError:
    # msgspec says "... - at `$.api_port`"; turn the path into the variable a
    # person sets, and keep msgspec's expected/got wording.
    text = str(error)
    detail, _, path = text.partition(" - at `$.")
    field = path.rstrip("`").split(".")[0].split("[")[0]
    if not field and "unknown field" in text:
        field = text.split("`")[1]
    variable = ENV_PREFIX + field.upper() if field else "settings"
    got = raw.get(field)
    message = f"{variable}: {detail}" + (f" (value {got!r})" if got is not None else "")
    return ConfigurationError(message, got=got, where=variable)
