"""compose.yaml and workers/ describe processes that exist, with durable NATS."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml

from nextra.cli.main import build_parser


def test_compose_runs_real_subcommands_with_fsync_always(root: Path) -> None:
    compose = yaml.safe_load((root / "compose.yaml").read_text())
    parser = build_parser()

    for name in ("api", "projector", "worker"):
        parser.parse_args(compose["services"][name]["command"])
    prepare = compose["services"]["prepare"]["entrypoint"][-1]
    for command in prepare.split("&&"):
        parser.parse_args(command.split()[1:])
    assert "sync_interval: always" in compose["configs"]["nats_conf"]["content"]


def test_worker_kinds_name_real_subcommands(root: Path) -> None:
    parser = build_parser()
    for path in (root / "workers").glob("*.toml"):
        worker = tomllib.loads(path.read_text())
        assert worker["command"][0] == "nextra"
        parser.parse_args(worker["command"][1:])
