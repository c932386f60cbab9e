"""The dedupe window's Kafka side: load it at start-up, then follow other replicas.

Every published event's key is written to the state topic (compacted; key =
hex of :func:`bridge.dedupe.dedupe_key`, value = :meth:`bridge.dedupe.Seen.encode`)
after Kafka acknowledged the event. This module reads it back:

1. **Load** (before the bridge reports ready): the state topic from the beginning
   up to its high watermark; entries older than the window are skipped.
2. **Repair the crash gap**: a bridge killed between an event's acknowledgement
   and its state record left an event in Kafka that the state topic does not
   know, and the sender, never answered 2xx, will resend it. So the tail of every
   event-topic partition after the last offset the state topic records is read
   too, and the events found there (by ``source`` and ``id``: from the value of a
   structured-mode record, else from the ``ce_source``/``ce_id`` headers of a
   binary-mode one) are remembered and written to the state topic.
3. **Follow** the state topic for as long as the bridge runs, so replicas learn
   each other's publishes within half a second (:data:`_FOLLOW_WAIT_MS`).

"Up to the high watermark" uses the watermark returned with each fetch, not the
ListOffsets answer, which the local test broker (Tansu on S3) gets wrong.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError

from bridge.config import Settings
from bridge.dedupe import ORIGIN_HEADER, Dedupe, Seen, dedupe_key, unrecorded_ranges
from bridge.kafka_security import client_options
from bridge.logs import get_logger
from bridge.metrics import Metrics

#: How long one fetch waits for records, in milliseconds.
_FETCH_WAIT_MS = 200
#: While following: the broker answers a fetch once it has this many bytes (~400 state records)
#: or after :data:`_FOLLOW_WAIT_MS`. A follower asking for every record as it arrives made the
#: local broker spend more CPU on the fetches than on everything else (docs/performance.md);
#: replicas now learn each other's keys within half a second instead of milliseconds.
_FOLLOW_MIN_BYTES = 64 * 1024
_FOLLOW_WAIT_MS = 500
#: Records applied per turn of the event loop while following.
_FOLLOW_CHUNK = 64

_log = get_logger("bridge.dedupe")


class StateTopicMissing(RuntimeError):
    """The state topic does not exist; the bridge does not create topics."""


@dataclass(slots=True)
class LoadReport:
    """What start-up found."""

    state_records: int = 0
    remembered: int = 0
    tail_records: int = 0
    recovered: int = 0
    took_s: float = 0.0


class Window(Protocol):
    """What the follower needs of the pipeline: its dedupe window and where it writes."""

    @property
    def dedupe(self) -> Dedupe | None:
        """The window (None when dedupe is off)."""

    @property
    def origin(self) -> bytes:
        """The value of this process's state records' ``origin`` header."""

    def remember(self, key: bytes, seen: Seen) -> None:
        """Take a key published elsewhere (another replica, an earlier run)."""

    def record_state(self, key: bytes, seen: Seen, event_id: str) -> None:
        """Write a committed key to the state topic."""

    def topics(self) -> list[str]:
        """Every topic events may be written to."""


class DedupeFollower:
    """Loads and follows the state topic into the pipeline's dedupe window."""

    def __init__(self, settings: Settings, pipeline: Window, metrics: Metrics) -> None:
        self._settings = settings
        self._pipeline = pipeline
        self._metrics = metrics
        self._topic = settings.dedupe.topic
        self._consumer: AIOKafkaConsumer | None = None
        #: Event offsets the state topic records, per event-topic partition (during load only).
        self._recorded: dict[tuple[str, int], list[int]] = {}
        #: The oldest commit time among them (same partitions).
        self._oldest: dict[tuple[str, int], float] = {}

    def _new_consumer(self, *, follow: bool = False) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            bootstrap_servers=list(kafka.bootstrap_servers),
            client_id=f"{kafka.client_id}-dedupe",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_min_bytes=_FOLLOW_MIN_BYTES if follow else 1,
            fetch_max_wait_ms=_FOLLOW_WAIT_MS if follow else 100,
            request_timeout_ms=int(max(kafka.publish_timeout_s, 10.0) * 1000),
            **client_options(kafka.security),
        )

    async def load(self) -> LoadReport:
        """Fill the window from the state topic and the event topics' tails."""
        started = time.monotonic()
        report = LoadReport()
        consumer = self._new_consumer()
        try:
            await consumer.start()
            existing = await consumer.topics()
            self._check_exists(existing)
            partitions = _partitions(consumer, [self._topic])
            consumer.assign(partitions)
            for tp, start in (await consumer.beginning_offsets(partitions)).items():
                consumer.seek(tp, start)
            async for batch in _until_caught_up(consumer, partitions):
                report.state_records += len(batch)
                report.remembered += self._apply(batch, loading=True)
            # Following starts where loading stopped, with a consumer that fetches less often.
            positions = {tp: await consumer.position(tp) for tp in partitions}
        finally:
            await consumer.stop()
        follower = self._new_consumer(follow=True)
        try:
            await follower.start()
            follower.assign(list(positions))
            for tp, position in positions.items():
                follower.seek(tp, position)
        except BaseException:
            await follower.stop()
            raise
        self._consumer = follower
        await self._repair_tail(existing, report)
        report.took_s = round(time.monotonic() - started, 3)
        return report

    def _check_exists(self, existing: set[str]) -> None:
        if self._topic not in existing:
            raise StateTopicMissing(
                f"dedupe state topic {self._topic!r} does not exist: create it with "
                "cleanup.policy=compact,delete and retention.ms above BRIDGE_DEDUPE_WINDOW_S "
                "(see `altinn-bridge topics`), or set BRIDGE_DEDUPE=memory"
            )

    async def follow(self) -> None:
        """Apply state records written from now on (by this and other replicas). Runs until cancelled."""
        consumer = self._consumer
        if consumer is None:
            raise RuntimeError("load() first")
        while True:
            try:
                batches = await consumer.getmany(timeout_ms=_FETCH_WAIT_MS * 5, max_records=_FOLLOW_CHUNK)
            except KafkaError as exc:
                self._metrics.dedupe_state_errors.labels("read").inc()
                _log.warning("reading the dedupe state topic failed; retrying", error=str(exc))
                await asyncio.sleep(1.0)
                continue
            for records in batches.values():
                self._apply(records, loading=False)
            # A fetch brings up to 64 KiB of records; applying them between requests, a chunk at
            # a time, keeps the loop from stalling the requests in flight behind one long pass.
            await asyncio.sleep(0)

    async def stop(self) -> None:
        """Close the consumer."""
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    def _apply(self, records: Iterable[ConsumerRecord], *, loading: bool) -> int:
        """Remember state records; the number that were within the window.

        While ``loading``, also note which event offsets they cover, for the crash-gap
        repair; never while following, where that list would grow for as long as the
        bridge runs (it did: ~36 bytes per event, found by the soak).
        """
        remembered = 0
        horizon = time.time() - self._settings.dedupe.window_s
        own = (ORIGIN_HEADER, self._pipeline.origin)
        for record in records:
            if record.value is None or record.key is None:
                continue  # a tombstone: compaction's deletion marker
            if not loading and record.headers and record.headers[0] == own:
                continue  # this process's own record: the window has it already
            try:
                seen = Seen.decode(record.value)
                key = bytes.fromhex(record.key.decode())
            except ValueError as exc:
                self._metrics.dedupe_state_errors.labels("read").inc()
                _log.warning("unreadable dedupe state record skipped", offset=record.offset, error=str(exc))
                continue
            if loading:
                place = (seen.topic, seen.partition)
                self._recorded.setdefault(place, []).append(seen.offset)
                self._oldest[place] = min(self._oldest.get(place, seen.at), seen.at)
            if seen.at >= horizon:
                self._pipeline.remember(key, seen)
                remembered += 1
        return remembered

    async def _repair_tail(self, existing: set[str], report: LoadReport) -> None:
        event_topics = [
            t for t in self._pipeline.topics() if t in existing and t != self._settings.topics.deadletter
        ]
        if not event_topics:
            return
        consumer = self._new_consumer()
        try:
            await consumer.start()
            partitions = _partitions(consumer, event_topics)
            consumer.assign(partitions)
            horizon = time.time() - self._settings.dedupe.window_s
            starts = await consumer.beginning_offsets(partitions)
            ranges = {tp: _Ranges(self._unrecorded(tp, starts[tp], horizon)) for tp in partitions}
            for tp, todo in ranges.items():
                consumer.seek(tp, todo.start)
            async for batch in _until_caught_up(consumer, partitions, ranges):
                report.tail_records += len(batch)
                for record in batch:
                    if await self._recover(record, horizon):
                        report.recovered += 1
        finally:
            self._recorded.clear()
            self._oldest.clear()
            await consumer.stop()

    def _unrecorded(self, tp: TopicPartition, beginning: int, horizon: float) -> list[tuple[int, int | None]]:
        """Offset ranges of ``tp`` to read: those no state record covers, within the window.

        Before the lowest recorded offset only when the state topic is younger than
        the window there (a new deployment); otherwise those events are older than
        the window, and reading them would only cost start-up time.
        """
        place = (tp.topic, tp.partition)
        offsets = self._recorded.get(place)
        if not offsets:
            return [(beginning, None)]
        ranges = unrecorded_ranges(offsets)
        lowest = min(offsets)
        if self._oldest[place] >= horizon and beginning < lowest:
            ranges.insert(0, (beginning, lowest))
        return ranges

    async def _recover(self, record: ConsumerRecord, horizon: float) -> bool:
        at = record.timestamp / 1000
        if at < horizon:
            return False
        found = _source_and_id(record)
        if found is None:
            return False
        source, event_id = found
        key = dedupe_key(source, event_id)
        dedupe = self._pipeline.dedupe
        if dedupe is None or dedupe.lookup(key) is not None:
            return False
        seen = Seen(at, record.topic, record.partition, record.offset)
        self._pipeline.remember(key, seen)
        self._pipeline.record_state(key, seen, event_id)
        return True


def _source_and_id(record: ConsumerRecord) -> tuple[str, str] | None:
    """The (``source``, ``id``) of the event in an event-topic record, if it holds one.

    Structured mode (``content-type: application/cloudevents+json``) carries them in
    the value, and by default nowhere else; binary mode, and structured records
    written with ``BRIDGE_RECORD_CE_HEADERS=on`` or by earlier versions, in the
    ``ce_source``/``ce_id`` headers, which are read first (no JSON to parse).
    """
    headers = dict(record.headers or ())
    source, event_id = headers.get("ce_source"), headers.get("ce_id")
    if source and event_id:
        return source.decode(errors="replace"), event_id.decode(errors="replace")
    content_type = headers.get("content-type", b"")
    if not content_type.lower().startswith(b"application/cloudevents+json") or not record.value:
        return None
    try:
        event = orjson.loads(record.value)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(event, dict):
        return None
    source, event_id = event.get("source"), event.get("id")
    if isinstance(source, str) and isinstance(event_id, str) and source and event_id:
        return source, event_id
    return None


def _partitions(consumer: AIOKafkaConsumer, topics: list[str]) -> list[TopicPartition]:
    return [
        TopicPartition(topic, p)
        for topic in topics
        for p in sorted(consumer.partitions_for_topic(topic) or ())
    ]


@dataclass(slots=True)
class _Ranges:
    """The offset ranges still to read in one partition; the last is open-ended."""

    todo: list[tuple[int, int | None]]

    @property
    def start(self) -> int:
        return self.todo[0][0]

    def wanted(self, offset: int) -> bool:
        """True if ``offset`` is in a range; False if the reader must seek to :attr:`start`."""
        while True:
            start, stop = self.todo[0]
            if stop is None or offset < stop:
                return offset >= start
            self.todo.pop(0)


async def _until_caught_up(
    consumer: AIOKafkaConsumer,
    partitions: list[TopicPartition],
    ranges: dict[TopicPartition, _Ranges] | None = None,
) -> AsyncIterator[list[ConsumerRecord]]:
    """Yield record batches until every partition's position reaches its high watermark.

    With ``ranges``, only the records inside each partition's ranges, seeking over
    the rest.
    """
    while True:
        batches = await consumer.getmany(*partitions, timeout_ms=_FETCH_WAIT_MS)
        for tp, records in batches.items():
            if ranges is None:
                yield records
                continue
            todo, kept = ranges[tp], []
            for record in records:
                if not todo.wanted(record.offset):  # read through a range: skip to the next
                    consumer.seek(tp, todo.start)
                    break
                kept.append(record)
            if kept:
                yield kept
        # Done when every position reached its high watermark (a seek above moves it back).
        behind = False
        for tp in partitions:
            highwater = consumer.highwater(tp)
            if highwater is None or await consumer.position(tp) < highwater:
                behind = True
                break
        if not behind:
            return
