"""The Kafka side: a small :class:`Publisher` interface and its aiokafka adapter.

The rest of the bridge only knows :class:`Publisher`; HTTP tests use a fake of
it, and :class:`KafkaPublisher` is tested against a real broker.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import random
import struct
import time
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from bridge.errors import PublishError
from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSettings
from bridge.routing import Headers


@dataclass(frozen=True, slots=True)
class Delivery:
    """Where Kafka stored an acknowledged record."""

    topic: str
    partition: int
    offset: int


class Publisher(Protocol):
    """What the bridge needs from Kafka."""

    async def start(self) -> None:
        """Connect; raise if no broker answers (the caller retries)."""

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        """Write one record and wait for its acknowledgement; raise :class:`PublishError` otherwise."""

    def submit(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> asyncio.Future[Delivery]:
        """Write one record without waiting: the future is :meth:`publish`'s outcome."""

    async def check(self, timeout_s: float) -> None:
        """Raise :class:`PublishError` unless a broker answers within ``timeout_s``."""


class KafkaPublisher:
    """aiokafka producer with ``acks=all``, shared by every request in flight.

    Records are gathered into one batch per topic partition while the loop runs
    and handed to aiokafka's bulk API (``create_batch`` / ``send_batch``): one
    future, one timer and one hand-over per batch instead of per record. Measured
    here (``python -m bench.kafka_floor``): aiokafka's per-record ``send()`` costs
    16 µs of CPU per record, its bulk API 1.4 µs — and the bridge writes two
    records per event. While a partition's batch is on its way to the broker the
    next one fills up, so batches grow with load by themselves, without linger.

    Keys go to partitions as aiokafka's (and Java's) default partitioner puts them
    (murmur2), so consumers see the same partitioning as with ``send()``.

    Each record's wait is bounded by ``publish_timeout_s``; the producer's own
    request timeout is the same, so a record that timed out for the caller does
    not linger for long. It may still land: the caller learns of it through the
    ``late`` future of the :class:`PublishError`.
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._lanes: dict[tuple[str, int], _Lane] = {}
        #: Sorted partitions per topic and when they were looked up (monotonic s).
        self._partitions: dict[str, tuple[list[int], float]] = {}

    def _new_producer(self) -> AIOKafkaProducer:
        s = self._settings
        return AIOKafkaProducer(
            bootstrap_servers=list(s.bootstrap_servers),
            client_id=s.client_id,
            acks="all",
            enable_idempotence=s.enable_idempotence,
            compression_type=None if s.compression == "none" else str(s.compression),
            linger_ms=s.linger_ms,
            max_batch_size=s.max_batch_bytes,
            request_timeout_ms=int(s.publish_timeout_s * 1000),
            **client_options(s.security),
        )

    async def start(self) -> None:
        """Connect to the cluster; a failed attempt leaves nothing behind and may be retried."""
        producer = self._new_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        """Hand over the batches still filling, flush everything pending and close connections."""
        drains = [lane.drain for lane in self._lanes.values() if lane.drain is not None]
        if drains:
            await asyncio.wait(drains, timeout=self._settings.publish_timeout_s)
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        """Add a record to its partition's batch; wait for ``acks=all``, at most ``publish_timeout_s``."""
        return await self.submit(topic, key, value, headers)

    def submit(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> asyncio.Future[Delivery]:
        """Add a record to its partition's batch, without waiting.

        The future resolves to the record's :class:`Delivery` on ``acks=all``, or
        fails with :class:`PublishError` (a timeout after ``publish_timeout_s``).
        No task is created unless the topic's partitions must be looked up first.
        """
        producer = self._producer
        if producer is None:
            return _failed(PublishError("not_connected", "not connected to Kafka yet"))
        known = self._partitions.get(topic)
        if known is None or time.monotonic() - known[1] >= _PARTITIONS_TTL_S:
            return asyncio.ensure_future(self._submit_after_lookup(producer, topic, key, value, headers))
        return self._append(producer, topic, known[0], (key, value, headers))

    async def _submit_after_lookup(
        self, producer: AIOKafkaProducer, topic: str, key: bytes | None, value: bytes, headers: Headers
    ) -> Delivery:
        partitions = await self._partitions_of(producer, topic)
        return await self._append(producer, topic, partitions, (key, value, headers))

    def _append(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        partitions: list[int],
        record: tuple[bytes | None, bytes, Headers],
    ) -> asyncio.Future[Delivery]:
        key, value, headers = record
        partition = partition_for(key, partitions)
        lane = self._lanes.get((topic, partition))
        if lane is None:
            lane = self._lanes[topic, partition] = _Lane(topic, partition)
        batch = lane.newest
        if batch is None or not batch.add(key, value, headers):  # full, gone to the broker, or expired
            batch = lane.newest = self._new_batch(producer)
            batch.add(key, value, headers)  # the first record always fits, whatever its size
            lane.queue.append(batch)
            if lane.drain is None:
                lane.drain = asyncio.ensure_future(self._drain(producer, lane))
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        batch.futures.append(future)
        return future

    async def _partitions_of(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partitions, looked up again after :data:`_PARTITIONS_TTL_S`."""
        known = self._partitions.get(topic)
        now = time.monotonic()
        if known is not None and now - known[1] < _PARTITIONS_TTL_S:
            return known[0]
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                partitions = sorted(await producer.partitions_for(topic))
        except TimeoutError:
            raise PublishError(
                "timeout", f"no metadata for topic {topic!r} within {self._settings.publish_timeout_s:g} s"
            ) from None
        except KafkaError as exc:
            raise PublishError(type(exc).__name__, f"Kafka refused the record: {exc}") from exc
        self._partitions[topic] = (partitions, now)
        return partitions

    def _new_batch(self, producer: AIOKafkaProducer) -> _Batch:
        batch = _Batch(producer.create_batch())
        batch.timer = asyncio.get_running_loop().call_later(
            self._settings.publish_timeout_s, batch.expire, self._settings.publish_timeout_s
        )
        return batch

    async def _drain(self, producer: AIOKafkaProducer, lane: _Lane) -> None:
        """Hand the lane's batches to aiokafka, one at a time, until none is left.

        A handed-over batch stays open: records keep joining it until aiokafka's
        sender takes it into a produce request (which closes it), as with
        ``send()``. ``send_batch`` returns once the partition's previous batch has
        gone to the broker, so meanwhile the next batch collects what arrives.
        """
        try:
            while lane.queue:
                batch = lane.queue.popleft()
                try:
                    sent = await producer.send_batch(batch.builder, lane.topic, partition=lane.partition)
                except asyncio.CancelledError:
                    batch.fail(PublishError("cancelled", "the bridge is stopping"))
                    raise
                except Exception as exc:  # noqa: BLE001 - every record of the batch learns it
                    batch.fail(_refused(exc))
                    continue
                sent.add_done_callback(functools.partial(batch.settle, lane.topic, lane.partition))
        finally:
            lane.drain = None

    async def check(self, timeout_s: float) -> None:
        """One metadata round trip to any broker, bounded by ``timeout_s``."""
        if self._producer is None:
            raise PublishError("not_connected", "not connected to Kafka yet")
        try:
            async with asyncio.timeout(timeout_s):
                await self._producer.client.fetch_all_metadata()
        except TimeoutError:
            raise PublishError("timeout", f"no broker answered within {timeout_s:g} s") from None
        except (KafkaError, OSError) as exc:
            raise PublishError(type(exc).__name__, f"no broker reachable: {exc}") from exc


#: How long a topic's partition list is reused before it is looked up again.
_PARTITIONS_TTL_S = 30.0


@dataclass(slots=True)
class _Lane:
    """A topic partition: its batches not yet handed over, the newest (open) one, the task handing over."""

    topic: str
    partition: int
    newest: _Batch | None = None
    queue: collections.deque[_Batch] = field(default_factory=collections.deque)
    drain: asyncio.Future[None] | None = None


@dataclass(slots=True)
class _Batch:
    """Records on their way to one partition, and the futures of their callers."""

    builder: BatchBuilder
    futures: list[asyncio.Future[Delivery]] = field(default_factory=list)
    timer: asyncio.TimerHandle | None = None
    #: Futures of records whose caller timed out (by position): their outcome, still to come.
    late: dict[int, asyncio.Future[Delivery]] = field(default_factory=dict)

    def add(self, key: bytes | None, value: bytes, headers: Headers) -> bool:
        """Append a record; False when the batch is full (or already handed over)."""
        return self.builder.append(timestamp=None, key=key, value=value, headers=headers) is not None

    def expire(self, timeout_s: float) -> None:
        """The publish timeout passed: answer the waiting callers, keep a late future for each."""
        self.builder.close()  # later records start a batch with a timer of their own
        loop = asyncio.get_running_loop()
        for index, future in enumerate(self.futures):
            if future.done():
                continue
            late: asyncio.Future[Delivery] = loop.create_future()
            self.late[index] = late
            future.set_exception(
                PublishError("timeout", f"Kafka did not acknowledge within {timeout_s:g} s", late=late)
            )

    def settle(self, topic: str, partition: int, sent: asyncio.Future[Any]) -> None:
        """The broker answered for the whole batch: give every record its outcome."""
        if self.timer is not None:
            self.timer.cancel()
        if sent.cancelled():
            self.fail(PublishError("cancelled", "the record's send was cancelled"))
            return
        if (exc := sent.exception()) is not None:
            self.fail(_refused(exc))
            return
        base = sent.result().offset
        for index, future in enumerate(self.futures):
            delivery = Delivery(topic, partition, base + index)
            if not future.done():
                future.set_result(delivery)
            elif (late := self.late.get(index)) is not None and not late.done():
                late.set_result(delivery)

    def fail(self, error: PublishError) -> None:
        """No record of the batch was stored: every waiting caller gets ``error``."""
        self.builder.close()
        if self.timer is not None:
            self.timer.cancel()
        for index, future in enumerate(self.futures):
            if not future.done():
                future.set_exception(PublishError(error.kind, error.detail))
            elif (late := self.late.get(index)) is not None and not late.done():
                late.set_exception(PublishError(error.kind, error.detail))
                late.exception()  # retrieved: whoever kept it reads it in a callback, if at all


def _failed(error: PublishError) -> asyncio.Future[Delivery]:
    future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    return future


def partition_for(key: bytes | None, partitions: list[int]) -> int:
    """The partition Kafka's default partitioner (Java's, aiokafka's, librdkafka's ``murmur2``) picks.

    ``partitions`` sorted. A record without a key goes to a random partition.
    """
    if key is None:
        return random.choice(partitions)  # noqa: S311 - spreading load, not security
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's 32-bit murmur2 of ``data``, equal to ``aiokafka.partitioner.murmur2``.

    aiokafka's pure-Python version reads one byte at a time (4 µs for a 36-byte
    key, paid twice per event); this one unpacks 32-bit words (see
    tests/unit/test_partitioning.py for the equality check).
    """
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    for (word,) in struct.iter_unpack("<I", data[:body]):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    tail = length & 3
    if tail:
        if tail == 3:  # noqa: PLR2004 - the bytes left over after the 4-byte words
            h ^= data[body + 2] << 16
        if tail >= 2:  # noqa: PLR2004
            h ^= data[body + 1] << 8
        h = ((h ^ data[body]) * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def _refused(exc: BaseException) -> PublishError:
    if isinstance(exc, KafkaError):
        return PublishError(type(exc).__name__, f"Kafka refused the record: {exc}")
    return PublishError(type(exc).__name__, f"the record could not be sent: {exc}")
