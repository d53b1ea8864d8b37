"""The embedded nats-server that tests and `nextra dev` start for themselves."""

from __future__ import annotations

import socket
from pathlib import Path

import nats

from nextra.devstack.nats import EmbeddedNats


async def test_a_port_taken_before_the_server_binds_it_is_replaced(
    tmp_path: Path,
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        server = EmbeddedNats(tmp_path / "nats")
        # As if another process took the port picked for it in the meantime.
        server.port = taken

        server.start()
        try:
            nc = await nats.connect(server.url)
            await nc.close()
        finally:
            server.stop()

    assert server.port != taken
