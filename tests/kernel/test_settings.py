"""Settings: read from NEXTRA_* and a file, refused with a message naming the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from nextra.kernel.errors import ConfigurationError
from nextra.kernel.settings import load_settings


def test_defaults_need_no_environment() -> None:
    settings = load_settings({})

    assert settings.api_port == 8080
    assert settings.nats_url is None
    assert settings.streams_path.name == "streams"


def test_environment_values_are_converted_from_strings() -> None:
    settings = load_settings(
        {
            "NEXTRA_API_PORT": "9001",
            "NEXTRA_NATS_URL": "nats://127.0.0.1:4333",
            "NEXTRA_CONNECT_TIMEOUT": "1.5",
            "UNRELATED": "x",
        }
    )

    assert settings.api_port == 9001
    assert settings.nats_url == "nats://127.0.0.1:4333"
    assert settings.connect_timeout == 1.5


@pytest.mark.parametrize(
    ("environ", "named"),
    [
        ({"NEXTRA_API_PORT": "eighty"}, "NEXTRA_API_PORT"),
        ({"NEXTRA_API_PORT": "70000"}, "NEXTRA_API_PORT"),
        ({"NEXTRA_LOG_LEVEL": "loud"}, "NEXTRA_LOG_LEVEL"),
        ({"NEXTRA_NATS_URL": "http://127.0.0.1:4222"}, "NEXTRA_NATS_URL"),
        ({"NEXTRA_DATABASE_URL": "mysql://x/y"}, "NEXTRA_DATABASE_URL"),
        ({"NEXTRA_CONNECT_TIMEOUT": "-1"}, "NEXTRA_CONNECT_TIMEOUT"),
    ],
)
def test_invalid_values_name_the_variable(environ: dict[str, str], named: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(environ)

    assert caught.value.where == named
    assert caught.value.message.startswith(named)


def test_file_values_apply_and_environment_wins(tmp_path: Path) -> None:
    config = tmp_path / "nextra.toml"
    config.write_text('api_port = 9100\nlog_level = "debug"\n')

    settings = load_settings(
        {"NEXTRA_CONFIG": str(config), "NEXTRA_LOG_LEVEL": "warning"}
    )

    assert settings.api_port == 9100
    assert settings.log_level == "warning"


def test_unknown_key_in_file_is_refused_by_name(tmp_path: Path) -> None:
    config = tmp_path / "nextra.toml"
    config.write_text("api_prot = 1\n")

    with pytest.raises(ConfigurationError) as caught:
        load_settings({"NEXTRA_CONFIG": str(config)})

    assert "api_prot" in caught.value.message


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        load_settings({"NEXTRA_CONFIG": str(tmp_path / "absent.toml")})


def test_secrets_in_urls_are_not_echoed() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({"NEXTRA_NATS_URL": "http://user:hunter2@host:4222"})

    assert "hunter2" not in caught.value.message
