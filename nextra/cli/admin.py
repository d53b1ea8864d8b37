"""Subcommands that act on a running deployment given by ``NEXTRA_*`` settings."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from nextra.app.tenants import TenantCommands
from nextra.auth.api_keys import generate_api_key
from nextra.cli.platform import Platform
from nextra.cli.processes import (
    check_port_free,
    run_api,
    run_projector_process,
    stop_on_signals,
)
from nextra.domain.flows import HandlerPolicy, format_report, validate_organism
from nextra.events.catalogue import REGISTRY
from nextra.events.envelope import CommandContext
from nextra.events.schema import render_event_docs, schema_files
from nextra.events.tenants import Tier
from nextra.eventstore.topology import apply_streams
from nextra.kernel.errors import ConfigurationError, NotFoundError
from nextra.kernel.ids import new_id
from nextra.kernel.settings import Settings, project_root
from nextra.readmodels.checkpoints import wait_projected
from nextra.readmodels.database import upgrade_database
from nextra.readmodels.rebuild import rebuild_projection
from nextra.readmodels.tenants import read_tenants

__all__ = (
    "db_upgrade",
    "events_docs",
    "flows_validate",
    "issue_owner_key",
    "projections_rebuild",
    "projections_status",
    "serve_api",
    "serve_projector",
    "streams_apply",
    "tenants_create",
    "tenants_list",
)


def _out(text: str) -> None:
    sys.stdout.write(text + "\n")


async def serve_api(settings: Settings) -> int:
    check_port_free(settings.api_host, settings.api_port)
    platform = await Platform.connect(settings, name="nextra-api")
    stopping = asyncio.Event()
    stop_on_signals(stopping)
    try:
        await run_api(platform, stopping)
    finally:
        await platform.close()
    return 0


async def serve_projector(settings: Settings) -> int:
    platform = await Platform.connect(settings, name="nextra-projector")
    stopping = asyncio.Event()
    stop_on_signals(stopping)
    try:
        await run_projector_process(platform, stopping)
    finally:
        await platform.close()
    return 0


async def serve_worker(settings: Settings) -> int:
    from nextra.cli.worker import run_worker_process

    platform = await Platform.connect(settings, name="nextra-worker")
    stopping = asyncio.Event()
    stop_on_signals(stopping)
    try:
        await run_worker_process(platform, stopping)
    finally:
        await platform.close()
    return 0


async def streams_apply(settings: Settings, *, dry_run: bool) -> int:
    platform = await Platform.connect(settings, name="nextra-streams")
    try:
        changes = await apply_streams(
            platform.nc.jetstream(), platform.streams, dry_run=dry_run
        )
    finally:
        await platform.close()
    verb = "would" if dry_run else "did"
    for change in changes:
        if change.action == "none":
            _out(f"{change.stream}: up to date")
            continue
        _out(f"{change.stream}: {verb} {change.action}")
        for key, (server, wanted) in sorted(change.differences.items()):
            _out(f"  {key}: {server!r} -> {wanted!r}")
    return 0


async def db_upgrade(settings: Settings) -> int:
    if not settings.database_url:
        message = "NEXTRA_DATABASE_URL is not set"
        raise ConfigurationError(message, where="NEXTRA_DATABASE_URL")
    await upgrade_database(settings.database_url)
    _out("read-model database is at the newest migration")
    return 0


async def projections_status(settings: Settings) -> int:
    platform = await Platform.connect(settings, name="nextra-status")
    try:
        lags = await platform.projection_lags()
    finally:
        await platform.close()
    _out(
        f"{'projection':<20} {'version':>8} {'checkpoint':>12} {'newest':>12} {'lag':>8}"
    )
    for name, lag in lags.items():
        version = str(lag["version"])
        if lag["stored_version"] not in (None, lag["version"]):
            version = f"{lag['stored_version']}->{lag['version']}"
        _out(
            f"{name:<20} {version:>8} {lag['checkpoint']:>12} "
            f"{lag['newest']:>12} {lag['lag']:>8}"
        )
    return 0


async def projections_rebuild(settings: Settings, *, name: str) -> int:
    platform = await Platform.connect(settings, name="nextra-rebuild")
    try:
        spec = next((s for s in platform.projections if s.name == name), None)
        if spec is None:
            known = ", ".join(s.name for s in platform.projections)
            message = f"no projection named {name!r}; known: {known}"
            raise NotFoundError(message, got=name, where="projections/")
        report = await rebuild_projection(
            spec, spec.create(), platform.engine, platform.store_for(spec.subject)
        )
    finally:
        await platform.close()
    _out(
        f"rebuilt {report.projection} v{report.version}: {report.events} events "
        f"up to sequence {report.last_sequence} in {report.seconds}s, swapped in"
    )
    return 0


async def tenants_create(
    settings: Settings, *, name: str, tenant_id: str | None, tier: Tier
) -> int:
    platform = await Platform.connect(settings, name="nextra-tenants")
    try:
        tenant_id = tenant_id or new_id()
        commands = TenantCommands(platform.store)
        result = await commands.create(
            tenant_id, name, tier=tier, context=CommandContext(actor="cli")
        )
        key, _ = await issue_owner_key(commands, tenant_id, "created by nextra tenants")
    finally:
        await platform.close()
    sequence = result.last_sequence if result else "-"
    _out(f"created tenant {tenant_id} ({name}, {tier}) at sequence {sequence}")
    _out(f"owner API key (shown once): {key}")
    return 0


async def issue_owner_key(
    commands: TenantCommands, tenant_id: str, name: str
) -> tuple[str, int]:
    """Give a tenant an owner API key: its secret, and the sequence it was stored at.

    The API knows the key once the ``access`` projection has passed that sequence.
    """
    key = generate_api_key()
    stored = await commands.create_api_key(
        tenant_id,
        key_id=key.prefix,
        key_hash=key.hash,
        name=name,
        role="owner",
        context=CommandContext(actor="cli"),
    )
    # A new key id is never a repeat, so the command always appends.
    assert stored is not None
    return key.secret, stored.last_sequence


async def flows_validate(settings: Settings, *, files: list[str]) -> int:
    """Validate files as the API would; exit 1 when any has errors."""
    policy = HandlerPolicy(trusted_python_prefixes=settings.trusted_handler_modules)
    failed = False
    for name in files:
        path = Path(name)
        try:
            text = await asyncio.to_thread(path.read_text, encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            _out(f"{name}: error: cannot read the file: {error}")
            failed = True
            continue
        report = validate_organism(text, policy=policy)
        if report.errors or report.warnings:
            _out(format_report(report, name))
        else:
            _out(f"{name}: ok")
        failed = failed or bool(report.errors)
    return 1 if failed else 0


async def tenants_list(settings: Settings) -> int:
    platform = await Platform.connect(settings, name="nextra-tenants")
    try:
        # Read our own writes: wait until the projection has seen the newest event.
        newest = await platform.store.last_sequence("nx.ev.*.tenant.*")
        await wait_projected(
            platform.engine,
            "tenants",
            newest,
            timeout=settings.read_your_writes_timeout,
        )
        async with platform.engine.connect() as connection:
            rows = await read_tenants(connection, limit=1000)
    finally:
        await platform.close()
    for row in rows:
        _out(f"{row.tenant_id}  {row.tier:<10}  {row.name}")
    return 0


async def events_docs(settings: Settings, *, check: bool) -> int:
    docs = project_root() / "docs"
    wanted: dict[Path, str] = {docs / "events.md": render_event_docs(REGISTRY)}
    wanted.update({docs / "events" / n: t for n, t in schema_files(REGISTRY).items()})
    stale = [p for p, text in wanted.items() if not p.exists() or p.read_text() != text]
    if check:
        for path in stale:
            _out(f"out of date: {path.relative_to(project_root())}")
        return 1 if stale else 0
    for path in stale:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text := wanted[path])
        _out(f"wrote {path.relative_to(project_root())} ({len(text)} bytes)")
    return 0
