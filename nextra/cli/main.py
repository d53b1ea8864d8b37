"""The ``nextra`` command: parse arguments, load settings, run one subcommand."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from nextra.kernel.errors import NextraError
from nextra.kernel.logging import configure_logging
from nextra.kernel.settings import Settings, load_settings
from nextra.kernel.tracing import configure_tracing

__all__ = ("main",)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nextra",
        description="Run AI agent workflows as a service, event-sourced on NATS JetStream.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    dev = commands.add_parser(
        "dev", help="the whole platform in one process, on embedded NATS and Postgres"
    )
    dev.add_argument("--data-dir", help="where embedded servers keep data (./.nextra)")
    dev.add_argument("--port", type=int, help="API port (8080)")
    dev.add_argument("--host", help="API address (127.0.0.1)")

    api = commands.add_parser("api", help="serve the REST and WebSocket API")
    api.add_argument("--port", type=int, help="API port (8080)")
    api.add_argument("--host", help="API address (127.0.0.1)")

    commands.add_parser("projector", help="keep the Postgres read models up to date")
    commands.add_parser("worker", help="run flows' steps (a pump worker)")

    streams = commands.add_parser("streams", help="JetStream stream definitions")
    streams_do = streams.add_subparsers(dest="action", required=True, metavar="ACTION")
    apply = streams_do.add_parser(
        "apply", help="create or update streams to match streams/"
    )
    apply.add_argument("--dry-run", action="store_true", help="show the changes only")

    db = commands.add_parser("db", help="the read-model database")
    db_do = db.add_subparsers(dest="action", required=True, metavar="ACTION")
    db_do.add_parser("upgrade", help="apply pending Alembic migrations")

    projections = commands.add_parser("projections", help="read-model projections")
    projections_do = projections.add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    projections_do.add_parser("status", help="each projection's checkpoint and lag")
    rebuild = projections_do.add_parser(
        "rebuild", help="rebuild one side by side, then swap"
    )
    rebuild.add_argument("name")

    tenants = commands.add_parser("tenants", help="tenants of this deployment")
    tenants_do = tenants.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = tenants_do.add_parser("create", help="create a tenant")
    create.add_argument("name", help="display name")
    create.add_argument(
        "--id", dest="tenant_id", help="tenant id (a new ULID if not given)"
    )
    create.add_argument(
        "--tier", choices=["free", "paid", "pro", "enterprise"], default="free"
    )
    tenants_do.add_parser("list", help="list tenants (from the read model)")

    flows = commands.add_parser("flows", help="flow definitions")
    flows_do = flows.add_subparsers(dest="action", required=True, metavar="ACTION")
    check = flows_do.add_parser(
        "validate", help="check organism.yaml files with the same rules as the API"
    )
    check.add_argument("files", nargs="+", metavar="FILE")

    events = commands.add_parser("events", help="the event contract")
    events_do = events.add_subparsers(dest="action", required=True, metavar="ACTION")
    docs = events_do.add_parser(
        "docs", help="regenerate docs/events.md and its JSON Schemas"
    )
    docs.add_argument(
        "--check", action="store_true", help="fail if they are out of date"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    arguments = build_parser().parse_args(argv)
    try:
        settings = load_settings(
            data_dir=getattr(arguments, "data_dir", None),
            api_port=getattr(arguments, "port", None),
            api_host=getattr(arguments, "host", None),
        )
        configure_logging(settings.log_level, settings.log_format)
        configure_tracing(settings.service_name)
        code = asyncio.run(_dispatch(arguments, settings))
    except NextraError as error:
        sys.stderr.write(f"nextra: {error.message}\n")
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


async def _dispatch(arguments: argparse.Namespace, settings: Settings) -> int:
    from nextra.cli import admin

    if arguments.command == "dev":
        from nextra.cli.dev import run_dev

        await run_dev(settings)
        return 0
    handlers: dict[tuple[str, str | None], Callable[..., Awaitable[int]]] = {
        ("api", None): admin.serve_api,
        ("projector", None): admin.serve_projector,
        ("worker", None): admin.serve_worker,
        ("streams", "apply"): admin.streams_apply,
        ("db", "upgrade"): admin.db_upgrade,
        ("projections", "status"): admin.projections_status,
        ("projections", "rebuild"): admin.projections_rebuild,
        ("tenants", "create"): admin.tenants_create,
        ("tenants", "list"): admin.tenants_list,
        ("flows", "validate"): admin.flows_validate,
        ("events", "docs"): admin.events_docs,
    }
    handler = handlers[(arguments.command, getattr(arguments, "action", None))]
    options: dict[str, Any] = {
        key: value
        for key, value in vars(arguments).items()
        if key not in {"command", "action", "data_dir", "port", "host"}
    }
    return await handler(settings, **options)
