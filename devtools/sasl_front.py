"""A SASL/SCRAM front for the local broker, for testing clients' SCRAM settings.

The pinned Tansu build does not complete SCRAM: users made with ``tansu user
create`` are reported unknown (librdkafka: "broker responded with unknown-user";
aiokafka: a server-final without ``v=``). This front speaks the Kafka protocol's
SASL part itself — ApiVersions is relayed to the broker, SaslHandshake (17) and
SaslAuthenticate (36, v0/v1) are answered here with a real RFC 5802/7677 SCRAM
server (the ``scramp`` library) — and once the client is authenticated it pipes
the connection to the broker untouched. A client that fails authentication never
reaches the broker.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import threading

from scramp import ScramException, ScramMechanism

from devtools.broker import free_port

API_VERSIONS, SASL_HANDSHAKE, SASL_AUTHENTICATE = 18, 17, 36
UNSUPPORTED_SASL_MECHANISM, SASL_AUTHENTICATION_FAILED = 33, 58


class ScramFront:
    """Listens on 127.0.0.1:``port``; authenticates ``users`` with ``mechanism``, then pipes to the broker."""

    def __init__(
        self,
        upstream_port: int,
        users: dict[str, str],
        mechanism: str = "SCRAM-SHA-256",
        port: int | None = None,
    ) -> None:
        self.upstream_port = upstream_port
        self.port = port or free_port()
        self.mechanism = mechanism
        scram = ScramMechanism(mechanism)
        self._scram = scram
        self._credentials = {
            user: scram.make_auth_info(password, iteration_count=4096) for user, password in users.items()
        }
        self.authenticated: list[str] = []
        self.refused = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="scram-front", daemon=True)
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    def start(self) -> None:
        """Listen; returns once the socket is bound."""
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(10)

    def stop(self) -> None:
        """Close everything and end the thread."""
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            for writer in self._writers:
                writer.close()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(5):
                    await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        try:
            upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            self._writers.add(upstream[1])
            if await self._authenticate(reader, writer, upstream):
                await asyncio.gather(
                    _copy(reader, upstream[1]), _copy(upstream[0], writer), return_exceptions=True
                )
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._writers.discard(writer)
            if upstream is not None:
                upstream[1].close()
                self._writers.discard(upstream[1])

    async def _authenticate(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> bool:
        server = self._scram.make_server(self._auth_info)
        step = 0
        while True:
            frame = await _read_frame(reader)
            api_key, api_version, correlation = struct.unpack_from(">hhi", frame)
            body = frame[10 + _client_id_length(frame) :]
            if api_key == API_VERSIONS:
                upstream[1].write(struct.pack(">i", len(frame)) + frame)
                await upstream[1].drain()
                writer.write(_framed(await _read_frame(upstream[0])))
            elif api_key == SASL_HANDSHAKE:
                (length,) = struct.unpack_from(">h", body)
                requested = body[2 : 2 + length].decode()
                error = 0 if requested == self.mechanism else UNSUPPORTED_SASL_MECHANISM
                name = self.mechanism.encode()
                writer.write(_response(correlation, struct.pack(">hih", error, 1, len(name)) + name))
                if error:
                    return False
            elif api_key == SASL_AUTHENTICATE:
                (length,) = struct.unpack_from(">i", body)
                token = body[4 : 4 + length].decode()
                try:
                    if step == 0:
                        server.set_client_first(token)
                        reply = server.get_server_first()
                    else:
                        server.set_client_final(token)
                        reply = server.get_server_final()
                except ScramException as exc:
                    self.refused += 1
                    writer.write(
                        _response(
                            correlation,
                            _authenticate_body(api_version, SASL_AUTHENTICATION_FAILED, str(exc), b""),
                        )
                    )
                    await writer.drain()
                    return False
                writer.write(_response(correlation, _authenticate_body(api_version, 0, None, reply.encode())))
                step += 1
                if step == 2:  # noqa: PLR2004 - client-first, then client-final
                    await writer.drain()
                    self.authenticated.append(server.user)
                    return True
            else:
                return False  # nothing else before authentication
            await writer.drain()

    def _auth_info(self, user: str) -> tuple[bytes, bytes, bytes, int]:
        try:
            return self._credentials[user]
        except KeyError:
            raise ScramException("unknown user") from None


def _client_id_length(frame: bytes) -> int:
    (length,) = struct.unpack_from(">h", frame, 8)
    return max(length, 0)


def _authenticate_body(version: int, error: int, message: str | None, auth_bytes: bytes) -> bytes:
    encoded = b"\xff\xff" if message is None else struct.pack(">h", len(message.encode())) + message.encode()
    body = struct.pack(">h", error) + encoded + struct.pack(">i", len(auth_bytes)) + auth_bytes
    if version >= 1:
        body += struct.pack(">q", 0)  # session lifetime: no re-authentication
    return body


def _response(correlation: int, body: bytes) -> bytes:
    return _framed(struct.pack(">i", correlation) + body)


def _framed(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


async def _read_frame(reader: asyncio.StreamReader) -> bytes:
    (size,) = struct.unpack(">i", await reader.readexactly(4))
    return await reader.readexactly(size)


async def _copy(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    finally:
        writer.close()


__all__: list[str] = ["ScramFront"]
