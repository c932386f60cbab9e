"""The Kafka side: a small :class:`Publisher` interface and its aiokafka adapter.

The rest of the bridge only knows :class:`Publisher`; HTTP tests use a fake of
it, and :class:`KafkaPublisher` is tested against a real broker.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Protocol

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from bridge.config import KafkaSettings
from bridge.errors import PublishError
from bridge.kafka_security import client_options
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

    async def check(self, timeout_s: float) -> None:
        """Raise :class:`PublishError` unless a broker answers within ``timeout_s``."""


class KafkaPublisher:
    """aiokafka producer with ``acks=all``, shared by every request in flight.

    Each publish is bounded by ``publish_timeout_s``; the producer's own request
    timeout is set to the same value so a record that timed out for the client
    does not linger in the producer's buffer for long (it may still land, which
    the at-least-once contract allows: the sender retries, consumers dedupe).
    """

    def __init__(self, settings: KafkaSettings) -> None:
        self._settings = settings
        self._producer: AIOKafkaProducer | None = None

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
        """Flush pending records and close connections."""
        if self._producer is not None:
            await self._producer.stop()

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        """Send one record and wait for ``acks=all``, at most ``publish_timeout_s``."""
        if self._producer is None:
            raise PublishError("not_connected", "not connected to Kafka yet")
        future = None
        try:
            async with asyncio.timeout(self._settings.publish_timeout_s):
                future = await self._producer.send(topic, value=value, key=key, headers=headers)
                # Shielded: when the wait times out the record stays in the producer and may
                # still be acknowledged; the caller learns of it through ``late``.
                metadata = await asyncio.shield(future)
        except TimeoutError:
            raise PublishError(
                "timeout",
                f"Kafka did not acknowledge within {self._settings.publish_timeout_s:g} s",
                late=_late_delivery(future) if future is not None else None,
            ) from None
        except KafkaError as exc:
            raise PublishError(type(exc).__name__, f"Kafka refused the record: {exc}") from exc
        return Delivery(topic=metadata.topic, partition=metadata.partition, offset=metadata.offset)

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


def _late_delivery(future: asyncio.Future[Any]) -> asyncio.Future[Delivery]:
    """A future of the ``Delivery`` of a record whose wait timed out."""
    late: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()

    def settle(done: asyncio.Future[Any]) -> None:
        if late.done():
            return
        if done.cancelled():
            late.cancel()
        elif (exc := done.exception()) is not None:
            late.set_exception(exc)
        else:
            metadata = done.result()
            late.set_result(Delivery(metadata.topic, metadata.partition, metadata.offset))

    future.add_done_callback(settle)
    return late
