"""A JWKS endpoint on 127.0.0.1 that counts its requests and can be taken down."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any


class JwksServer:
    """Serves ``keys`` as a JWK Set over HTTP/1.1, one request per connection.

    ``status`` other than 200 answers with that status; ``hang`` accepts the
    request and never answers, like an endpoint that times out.
    """

    def __init__(self) -> None:
        self.keys: list[dict[str, Any]] = []
        self.status = 200
        self.hang = False
        self.requests = 0
        self._server: asyncio.Server | None = None
        self._hung: list[asyncio.StreamWriter] = []

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/.well-known/jwks.json"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._hung:
            writer.close()
        await self._server.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
            self.requests += 1
            if self.hang:
                self._hung.append(writer)
                return
            if self.status == 200:
                body = json.dumps({"keys": self.keys}).encode()
                head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            else:
                body = b"unavailable"
                head = f"HTTP/1.1 {self.status} Down\r\nContent-Type: text/plain\r\n"
            head += f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
            writer.write(head.encode() + body)
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    await server.start()
    try:
        yield server
    finally:
        await server.stop()
