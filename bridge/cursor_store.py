"""The reconcile cursor: where the pull API is read from next, kept in a compacted Kafka topic.

One record per resource: key = the resource URN, value = JSON
``{"after": <event id>, "after_time": <its time>, "newest_event_time": …, "updated_at": …}``
(times in Unix seconds, ``null`` when unknown). Written with the bridge's own
producer (``acks=all``) after every event up to ``after`` was handled for good;
read back from the beginning up to the high watermark of the fetch, like the
dedupe state topic (:mod:`bridge.dedupe_store`), so the last record of a key wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition

from bridge.kafka_security import client_options
from bridge.kafka_settings import KafkaSettings
from bridge.publisher import Publisher

#: How long one fetch waits for records while loading, in milliseconds.
_FETCH_WAIT_MS = 200


class CursorTopicMissing(RuntimeError):
    """The cursor topic does not exist; the bridge does not create topics."""


@dataclass(frozen=True, slots=True)
class Cursor:
    """Where reconciling continues: after event ``after`` (``"0"``: from Altinn's oldest)."""

    after: str
    #: The ``time`` of event ``after``, to recognise Altinn restarting from its oldest event.
    after_time: float | None = None
    #: The newest ``time`` among the events reconciled so far (the lag is measured from it).
    newest_event_time: float | None = None
    #: When this cursor was stored.
    updated_at: float = 0.0

    def encode(self) -> bytes:
        """The record value."""
        return orjson.dumps(
            {
                "after": self.after,
                "after_time": self.after_time,
                "newest_event_time": self.newest_event_time,
                "updated_at": self.updated_at,
            }
        )

    @classmethod
    def decode(cls, value: bytes) -> Cursor:
        """A cursor from a record value; ``ValueError`` when it is not one."""
        try:
            data: Any = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ValueError("cursor record is not JSON") from None
        if not isinstance(data, dict) or not isinstance(data.get("after"), str) or not data["after"]:
            raise ValueError("cursor record has no 'after'")
        return cls(
            after=data["after"],
            after_time=_number(data.get("after_time")),
            newest_event_time=_number(data.get("newest_event_time")),
            updated_at=_number(data.get("updated_at")) or 0.0,
        )


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


class CursorStore:
    """Reads and writes cursors in ``topic``, written through the bridge's ``publisher``."""

    def __init__(self, kafka: KafkaSettings, topic: str, publisher: Publisher) -> None:
        self._kafka = kafka
        self.topic = topic
        self._publisher = publisher

    async def load(self, resource: str) -> Cursor | None:
        """The last cursor stored for ``resource``; ``None`` if there is none (or it was deleted)."""
        kafka = self._kafka
        consumer = AIOKafkaConsumer(
            bootstrap_servers=list(kafka.bootstrap_servers),
            client_id=f"{kafka.client_id}-cursor",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            request_timeout_ms=int(max(kafka.publish_timeout_s, 10.0) * 1000),
            **client_options(kafka.security),
        )
        wanted = resource.encode()
        found: Cursor | None = None
        try:
            await consumer.start()
            if self.topic not in await consumer.topics():
                raise CursorTopicMissing(
                    f"reconcile cursor topic {self.topic!r} does not exist: create it with one partition "
                    "and cleanup.policy=compact (see `altinn-bridge topics` with BRIDGE_RECONCILE=on)"
                )
            partitions = [
                TopicPartition(self.topic, p) for p in sorted(consumer.partitions_for_topic(self.topic) or ())
            ]
            consumer.assign(partitions)
            for tp, start in (await consumer.beginning_offsets(partitions)).items():
                consumer.seek(tp, start)
            while True:
                batches = await consumer.getmany(*partitions, timeout_ms=_FETCH_WAIT_MS)
                for records in batches.values():
                    for record in records:
                        if record.key != wanted:
                            continue
                        # A tombstone deletes the cursor; an unreadable record is an error worth stopping on.
                        found = None if record.value is None else Cursor.decode(record.value)
                if await _caught_up(consumer, partitions):
                    return found
        finally:
            await consumer.stop()

    async def save(self, resource: str, cursor: Cursor) -> None:
        """Store ``cursor`` for ``resource``; :class:`~bridge.errors.PublishError` if not acknowledged."""
        await self._publisher.publish(self.topic, resource.encode(), cursor.encode(), [])


async def _caught_up(consumer: AIOKafkaConsumer, partitions: list[TopicPartition]) -> bool:
    """True when every position reached the high watermark of the last fetch (not ListOffsets)."""
    for tp in partitions:
        highwater = consumer.highwater(tp)
        if highwater is None or await consumer.position(tp) < highwater:
            return False
    return True
