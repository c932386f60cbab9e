"""A TLS-terminating TCP proxy on 127.0.0.1, for testing clients' Kafka TLS settings.

The pinned Tansu build cannot serve TLS itself (its ``--cert`` and ``--key``
options are declared mutually exclusive), so tests put this in front of a
plaintext broker that advertises the proxy's port. Runs in a thread with its
own event loop, so synchronous fixtures can start and stop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading

from devtools.broker import free_port


class TlsProxy:
    """Accepts TLS on ``port`` and pipes the plaintext to ``127.0.0.1:upstream_port``."""

    def __init__(self, context: ssl.SSLContext, upstream_port: int, port: int | None = None) -> None:
        self.context = context
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tls-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        """Listen; returns once the socket is bound."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        """Close the listener and every piped connection, and end the thread."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(
            self._pipe, "127.0.0.1", self.port, ssl=self.context, ssl_handshake_timeout=5
        )

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _pipe(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_writer.close()
            return
        self._writers.update((client_writer, upstream_writer))
        try:
            await asyncio.gather(
                _copy(client_reader, upstream_writer),
                _copy(upstream_reader, client_writer),
                return_exceptions=True,
            )
        finally:
            self._writers.difference_update((client_writer, upstream_writer))


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()
