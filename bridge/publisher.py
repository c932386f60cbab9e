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
from typing import Any, NamedTuple, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from aiokafka.producer.message_accumulator import BatchBuilder

from bridge.errors import PublishError
from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSettings
from bridge.routing import Headers


class Delivery(NamedTuple):
    """Where Kafka stored an acknowledged record."""

    topic: str
    partition: int
    offset: int


#: A record's place on its way to Kafka: the future of its batch (one per batch, resolving to
#: where the batch's first record went) and the record's index in that batch.
Slot = tuple["asyncio.Future[Delivery]", int]


def delivery_at(first: Delivery, index: int) -> Delivery:
    """Where the record ``index`` places after its batch's first (``first``) was stored."""
    return first if index == 0 else Delivery(first.topic, first.partition, first.offset + index)


class Publisher(Protocol):
    """What the bridge needs from Kafka."""

    async def start(self) -> None:
        """Connect; raise if no broker answers (the caller retries)."""

    async def stop(self) -> None:
        """Flush what is pending and disconnect."""

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, spread: int | None = None
    ) -> Slot:
        """Add one record to its partition's current batch, without waiting.

        The slot's future resolves to the batch's first :class:`Delivery` on ``acks=all``, or
        fails with :class:`PublishError` (``timeout`` after ``publish_timeout_s``, with the
        outcome to come in ``late``). ``spread``, when given, picks the partition
        (``spread % partitions``) instead of the key's murmur2: for the bridge's own topics,
        where no other producer must agree on the partition.
        """

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        """Write one record and wait for its acknowledgement; raise :class:`PublishError` otherwise."""

    async def check(self, timeout_s: float) -> None:
        """Raise :class:`PublishError` unless a broker answers within ``timeout_s``."""


class KafkaPublisher:
    """aiokafka producer with ``acks=all``, shared by every request in flight.

    Records are gathered into one batch per topic partition while the loop runs
    and handed to aiokafka's bulk API (``create_batch`` / ``send_batch``): one
    future, one timer and one hand-over per batch instead of per record; a record
    is appended synchronously and its caller awaits the batch's future. Measured
    here (docs/performance.md): aiokafka's per-record ``send()`` costs 16 µs of
    CPU per record, its bulk API 1.4 µs — and the bridge writes two records per
    event. While a partition's batch is on its way to the broker the
    next one fills up, so batches grow with load by themselves, without linger.

    Keys go to partitions as aiokafka's (and Java's) default partitioner puts them
    (murmur2), so consumers see the same partitioning as with ``send()``.

    Each batch's wait is bounded by ``publish_timeout_s``; the producer's own
    request timeout is the same, so a batch that timed out for its callers does
    not linger for long. It may still land: the callers learn of it through the
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
        first, index = self.append(topic, key, value, headers)
        return delivery_at(await first, index)

    def append(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, spread: int | None = None
    ) -> Slot:
        """Add a record to its partition's current batch (see :meth:`Publisher.append`).

        Synchronous: no task and no future per record. Only when the topic's partitions
        must be looked up first (its first record, then every :data:`_PARTITIONS_TTL_S`)
        does a task wait for that and append afterwards.
        """
        producer = self._producer
        if producer is None:
            return _failed(PublishError("not_connected", "not connected to Kafka yet")), 0
        known = self._partitions.get(topic)
        if known is None or time.monotonic() - known[1] >= _PARTITIONS_TTL_S:
            return asyncio.ensure_future(
                self._append_after_lookup(producer, topic, (key, value, headers), spread)
            ), 0
        partitions = known[0]
        partition = partition_for(key, partitions) if spread is None else partitions[spread % len(partitions)]
        return self._append(producer, (topic, partition), key, value, headers)

    async def _append_after_lookup(
        self,
        producer: AIOKafkaProducer,
        topic: str,
        record: tuple[bytes | None, bytes, Headers],
        spread: int | None,
    ) -> Delivery:
        key, value, headers = record
        partitions = await self._partitions_of(producer, topic)
        partition = partition_for(key, partitions) if spread is None else partitions[spread % len(partitions)]
        first, index = self._append(producer, (topic, partition), key, value, headers)
        return delivery_at(await first, index)

    def _append(
        self,
        producer: AIOKafkaProducer,
        where: tuple[str, int],
        key: bytes | None,
        value: bytes,
        headers: Headers,
    ) -> Slot:
        lane = self._lanes.get(where)
        if lane is None:
            lane = self._lanes[where] = _Lane(*where)
        batch = lane.newest
        if (
            batch is None or (index := batch.add(key, value, headers)) < 0
        ):  # full, gone to the broker, expired
            batch = lane.newest = self._new_batch(producer)
            index = batch.add(key, value, headers)  # the first record always fits, whatever its size
            lane.queue.append(batch)
            if lane.drain is None:
                lane.drain = asyncio.ensure_future(self._drain(producer, lane))
        return batch.sent, index

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
        batch = _Batch(producer.create_batch(), _Shared(loop=asyncio.get_running_loop()))
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


class _Shared(asyncio.Future[Delivery]):
    """A batch's one future, awaited by every caller with a record in it.

    A caller that is cancelled (a request task at shutdown) must not cancel it for the
    others, as awaiting a future would: the cancellation waits instead until the batch
    is answered, which its timer bounds by ``publish_timeout_s``.
    """

    def cancel(self, msg: Any = None) -> bool:
        """Refused: the batch's outcome belongs to every record in it."""
        del msg
        return False


@dataclass(slots=True)
class _Batch:
    """Records on their way to one partition, and the one future all their callers await."""

    builder: BatchBuilder
    #: Resolves to the first record's :class:`Delivery`; record ``i`` is at offset + ``i``.
    sent: asyncio.Future[Delivery]
    count: int = 0
    timer: asyncio.TimerHandle | None = None
    #: After a timeout: the batch's real outcome, still to come (callers got 503 meanwhile).
    late: asyncio.Future[Delivery] | None = None

    def add(self, key: bytes | None, value: bytes, headers: Headers) -> int:
        """Append a record; its index in the batch, or -1 when the batch is full (or handed over)."""
        if self.builder.append(timestamp=None, key=key, value=value, headers=headers) is None:
            return -1
        self.count += 1
        return self.count - 1

    def expire(self, timeout_s: float) -> None:
        """The publish timeout passed: answer the waiting callers, keep the late outcome to come."""
        self.builder.close()  # later records start a batch with a timer of their own
        if self.sent.done():
            return
        self.late = asyncio.get_running_loop().create_future()
        self.sent.set_exception(
            PublishError("timeout", f"Kafka did not acknowledge within {timeout_s:g} s", late=self.late)
        )
        self.sent.exception()  # retrieved: every caller reads it when it awaits

    def settle(self, topic: str, partition: int, sent: asyncio.Future[Any]) -> None:
        """The broker answered for the whole batch: every record learns its outcome at once."""
        if self.timer is not None:
            self.timer.cancel()
        if sent.cancelled():
            self.fail(PublishError("cancelled", "the record's send was cancelled"))
            return
        if (exc := sent.exception()) is not None:
            self.fail(_refused(exc))
            return
        first = Delivery(topic, partition, sent.result().offset)
        if not self.sent.done():
            self.sent.set_result(first)
        elif self.late is not None and not self.late.done():
            self.late.set_result(first)

    def fail(self, error: PublishError) -> None:
        """No record of the batch was stored: every waiting caller gets ``error``."""
        self.builder.close()
        if self.timer is not None:
            self.timer.cancel()
        if not self.sent.done():
            self.sent.set_exception(error)
            self.sent.exception()  # retrieved: every caller reads it when it awaits
        elif self.late is not None and not self.late.done():
            self.late.set_exception(PublishError(error.kind, error.detail))
            self.late.exception()  # retrieved: whoever kept it reads it in a callback, if at all


def _failed(error: PublishError) -> asyncio.Future[Delivery]:
    future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
    future.set_exception(error)
    future.exception()  # retrieved: the caller reads it when it awaits
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
    key); this one unpacks every 32-bit word in one call (see
    tests/unit/test_partitioning.py for the equality check).
    """
    length = len(data)
    h = 0x9747B28C ^ length
    body = length & ~3
    words = _WORDS.get(body)
    if words is None:
        words = struct.Struct(f"<{body // 4}I")
        if body <= _CACHED_KEY_BYTES:
            _WORDS[body] = words
    for word in words.unpack_from(data):
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


#: A compiled unpacker per key length (in whole words), for keys up to this many bytes (ids are
#: short; the cache stays at most 64 entries whatever is sent).
_CACHED_KEY_BYTES = 256
_WORDS: dict[int, struct.Struct] = {}


def _refused(exc: BaseException) -> PublishError:
    if isinstance(exc, KafkaError):
        return PublishError(type(exc).__name__, f"Kafka refused the record: {exc}")
    return PublishError(type(exc).__name__, f"the record could not be sent: {exc}")
