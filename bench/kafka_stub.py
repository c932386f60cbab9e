"""A Kafka broker reduced to the socket: just enough protocol for a producer, in-process.

For counting the bridge's own instructions (``bench.instructions``): the real
aiokafka producer, with its batching, connects to this over 127.0.0.1 and gets
answers at once, so what is counted is the bridge and its client library, not a
broker. It speaks ApiVersions v0, Metadata v0, InitProducerId v0 (idempotence
stays on, as in production) and Produce v3, and acknowledges every record batch
with the next offsets of its partition. Every topic exists with ``partitions``
partitions. Never a test double for behaviour: tests use the real broker.
"""

from __future__ import annotations

import asyncio
import struct
from collections import defaultdict
from typing import Self

_API_VERSIONS, _METADATA, _INIT_PRODUCER_ID, _PRODUCE = 18, 3, 22, 0
_SUPPORTED = {_API_VERSIONS: (0, 0), _METADATA: (0, 0), _INIT_PRODUCER_ID: (0, 0), _PRODUCE: (3, 3)}
# Record batch v2: lastOffsetDelta sits after baseOffset(8) length(4) epoch(4) magic(1) crc(4) attributes(2).
_LAST_OFFSET_DELTA = struct.Struct(">i")
_LAST_OFFSET_DELTA_AT = 23


def _string(value: str) -> bytes:
    encoded = value.encode()
    return struct.pack(">h", len(encoded)) + encoded


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.at = data, 0

    def take(self, fmt: str) -> int:
        (value,) = struct.unpack_from(fmt, self.data, self.at)
        self.at += struct.calcsize(fmt)
        return int(value)

    def string(self) -> str | None:
        length = self.take(">h")
        if length < 0:
            return None
        value = self.data[self.at : self.at + length].decode()
        self.at += length
        return value

    def blob(self) -> bytes:
        length = self.take(">i")
        value = self.data[self.at : self.at + length]
        self.at += max(length, 0)
        return value


class KafkaStub:
    """``async with KafkaStub() as stub:`` then ``stub.bootstrap``; counts the records it stored."""

    def __init__(self, partitions: int = 1) -> None:
        self.partitions = partitions
        self.records = 0
        #: Produce requests answered: records / requests is the mean batching.
        self.requests = 0
        self._next: defaultdict[tuple[str, int], int] = defaultdict(int)
        self._server: asyncio.Server | None = None
        self.bootstrap = ""

    async def __aenter__(self) -> Self:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        self.bootstrap = f"127.0.0.1:{self.port}"
        return self

    async def __aexit__(self, *_: object) -> None:
        if self._server is not None:
            self._server.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                (size,) = struct.unpack(">i", await reader.readexactly(4))
                request = _Reader(await reader.readexactly(size))
                api_key, _version, correlation = request.take(">h"), request.take(">h"), request.take(">i")
                request.string()  # client id
                body = self._answer(api_key, request)
                writer.write(struct.pack(">ii", len(body) + 4, correlation) + body)
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    def _answer(self, api_key: int, request: _Reader) -> bytes:
        if api_key == _API_VERSIONS:
            rows = b"".join(struct.pack(">hhh", key, *span) for key, span in _SUPPORTED.items())
            return struct.pack(">hi", 0, len(_SUPPORTED)) + rows
        if api_key == _METADATA:
            return self._metadata(request)
        if api_key == _INIT_PRODUCER_ID:
            return struct.pack(">ihqh", 0, 0, 1, 0)
        if api_key == _PRODUCE:
            return self._produce(request)
        raise ConnectionError(f"the stub does not speak API {api_key}")

    def _metadata(self, request: _Reader) -> bytes:
        topics = [request.string() or "" for _ in range(max(request.take(">i"), 0))]
        out = [struct.pack(">ii", 1, 0), _string("127.0.0.1"), struct.pack(">i", self.port)]
        out.append(struct.pack(">i", len(topics)))
        for topic in topics:
            out += [struct.pack(">h", 0), _string(topic), struct.pack(">i", self.partitions)]
            out += [struct.pack(">hiiiiii", 0, p, 0, 1, 0, 1, 0) for p in range(self.partitions)]
        return b"".join(out)

    def _produce(self, request: _Reader) -> bytes:
        self.requests += 1
        request.string()  # transactional id
        request.take(">h")  # acks
        request.take(">i")  # timeout
        out = []
        topics = request.take(">i")
        out.append(struct.pack(">i", topics))
        for _ in range(topics):
            topic = request.string() or ""
            partitions = request.take(">i")
            out += [_string(topic), struct.pack(">i", partitions)]
            for _ in range(partitions):
                partition = request.take(">i")
                batch = request.blob()
                count = _LAST_OFFSET_DELTA.unpack_from(batch, _LAST_OFFSET_DELTA_AT)[0] + 1
                base = self._next[topic, partition]
                self._next[topic, partition] = base + count
                self.records += count
                out.append(struct.pack(">ihqq", partition, 0, base, -1))
        out.append(struct.pack(">i", 0))
        return b"".join(out)
