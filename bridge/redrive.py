"""``altinn-bridge redrive --from TOPIC``: send records the bridge wrote through the pipeline again.

After a fix or an upgrade (Altinn added a type and it got a route, a filter was
changed), the records of the dead-letter topic, the unknown-type topic or any
topic the bridge wrote can be brought back: each record's original event is
rebuilt (:func:`original_event`) and handed to the same
:class:`~bridge.pipeline.Pipeline` as a push, so validation, filters, dedupe,
routing and publishing behave exactly as for Altinn's deliveries.

- **Still invalid** records stay where they are: checked with
  :func:`~bridge.events.parse_event` first, counted by reason, never dead-lettered again.
- **In place**: an event whose route is the topic it is read from (an unknown
  type that still has no route) is left there, not copied onto itself.
- **Once**: progress is kept in Kafka, in the consumer group
  ``<KAFKA_CLIENT_ID>.redrive.<topic>``; offsets are committed after the records
  up to them were acknowledged (and their dedupe keys written), so a second run,
  also after an interruption, continues where the first stopped.
- **Beside running bridges**: with ``BRIDGE_DEDUPE=kafka`` the dedupe window is
  loaded and followed like a replica's, and every published key goes to the
  state topic, so the bridges learn them.

A run reads the records present when it started (up to each partition's high
watermark then), at most ``--limit`` of them, between ``--since`` and ``--until``
(record timestamps). Progress goes to stderr, a JSON summary to stdout.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from aiokafka.errors import KafkaError
from aiokafka.structs import OffsetAndMetadata
from prometheus_client import CollectorRegistry

from bridge.config import DedupeMode, Settings
from bridge.dedupe_store import DedupeFollower, StateTopicMissing
from bridge.errors import BridgeError, PublishError
from bridge.events import Event, InvalidEvent, add_binary_data, parse_event
from bridge.http_contract import CLOUDEVENTS_MEDIA_TYPE
from bridge.kafka_security import client_options
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import Delivery, KafkaPublisher, Publisher, Slot
from bridge.routing import Headers, Router

#: Records handed to the pipeline at once (well under the default BRIDGE_MAX_IN_FLIGHT, 512).
CHUNK_RECORDS: Final = 256
#: How long one fetch waits for records, in milliseconds.
_FETCH_WAIT_MS: Final = 500
#: Bound on committing offsets, on the final wait for dedupe state records, on stopping clients.
_COMMIT_TIMEOUT_S: Final = 10.0
#: Without a terminal, a progress line this often (seconds); on one, the bar is redrawn this often.
_PROGRESS_EVERY_S: Final = 5.0
_BAR_EVERY_S: Final = 0.2
_BAR_WIDTH: Final = 30
#: Exit code of a run stopped by SIGINT/SIGTERM (after committing what was acknowledged).
EXIT_INTERRUPTED: Final = 130

#: What happened to a record, as counted in the summary: the pipeline's outcomes
#: (``published``, ``duplicate``, ``filtered``, ``validation``) and the redrive's own.
INVALID: Final = "invalid"
IN_PLACE: Final = "in_place"


def group_id(settings: Settings, topic: str) -> str:
    """The consumer group keeping a redrive's progress through ``topic``."""
    return f"{settings.kafka.client_id}.redrive.{topic}"


@dataclass(frozen=True, slots=True)
class Options:
    """What to redrive: the source topic and the command's options."""

    source: str
    dry_run: bool = False
    #: Record timestamps (epoch seconds): records before ``since`` are passed over for good,
    #: a partition stops at its first record after ``until`` (it stays for a later run).
    since: float | None = None
    until: float | None = None
    limit: int | None = None


def original_event(headers: Iterable[tuple[str, bytes]], value: bytes | None) -> bytes:
    """The structured-mode event a record of the bridge (or a dead letter) carries.

    A structured-mode record (``content-type: application/cloudevents…``) and a
    dead letter (``dlq_reason`` header; its value is the body as received) carry it
    as their value. A binary-mode record (``ce_specversion`` header) is rebuilt,
    the inverse of :func:`bridge.routing.binary_record`: every ``ce_<name>`` header
    an attribute (a string: the binding keeps no types), ``content-type`` the
    ``datacontenttype``, the value ``data`` (parsed under a JSON content type,
    else ``data_base64``; none when empty). Anything else is taken as a
    structured event. Raises :class:`InvalidEvent` when a binary record cannot be
    an event (a header or JSON value that does not decode).
    """
    pairs = list(headers)
    names = {name.lower(): raw for name, raw in pairs}
    content_type = _text(names["content-type"], "content-type") if "content-type" in names else None
    structured = content_type is not None and content_type.lower().startswith("application/cloudevents")
    if "dlq_reason" in names or structured or "ce_specversion" not in names:
        return value or b""
    attributes: dict[str, object] = {}
    for name, raw in pairs:
        lowered = name.lower()
        if lowered.startswith("ce_") and len(lowered) > len("ce_"):
            attributes[lowered[3:]] = _text(raw, name)
    if content_type is not None:
        attributes["datacontenttype"] = content_type
    add_binary_data(attributes, content_type, value or b"", "record value")
    return orjson.dumps(attributes)


def _text(raw: bytes | None, header: str) -> str:
    try:
        return (raw or b"").decode("utf-8")
    except UnicodeDecodeError:
        attribute = header.lower().removeprefix("ce_")
        raise InvalidEvent("invalid_attribute", f"record header {header!r} is not UTF-8", attribute) from None


@dataclass(slots=True)
class Totals:
    """What a run did, by outcome; the JSON summary."""

    outcomes: Counter[str] = field(default_factory=Counter)
    invalid_reasons: Counter[str] = field(default_factory=Counter)
    published_to: Counter[str] = field(default_factory=Counter)
    read: int = 0
    before_since: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def handled(self) -> int:
        """Records taken into this run (those passed over by ``--since`` aside)."""
        return sum(self.outcomes.values())

    def as_json(self) -> dict[str, object]:
        """The counts, every outcome present (0 when none)."""
        took_s = time.monotonic() - self.started
        return {
            "read": self.read,
            "published": self.outcomes["published"],
            "duplicates": self.outcomes["duplicate"],
            "filtered": self.outcomes["filtered"],
            "validation": self.outcomes["validation"],
            IN_PLACE: self.outcomes[IN_PLACE],
            INVALID: self.outcomes[INVALID],
            "invalid_reasons": dict(sorted(self.invalid_reasons.items())),
            "published_to": dict(sorted(self.published_to.items())),
            "before_since": self.before_since,
            "took_s": round(took_s, 3),
            "rate_per_s": round(self.handled / took_s, 1) if took_s > 0 else 0.0,
        }


class DryRunPublisher:
    """A :class:`~bridge.publisher.Publisher` that writes nothing: ``--dry-run``.

    Every record is "acknowledged" at once with partition and offset -1, so the
    pipeline decides as it would (a second copy of an event in the source topic
    comes out ``duplicate``) and nothing reaches Kafka, state records included.
    """

    async def start(self) -> None:
        """Nothing to connect."""

    async def stop(self) -> None:
        """Nothing to flush."""

    async def publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:  # noqa: ARG002
        """Pretend ``topic`` took the record."""
        return Delivery(topic, -1, -1)

    def append(
        self,
        topic: str,
        key: bytes | None,  # noqa: ARG002 - the Publisher interface
        value: bytes,  # noqa: ARG002
        headers: Headers,  # noqa: ARG002
        spread: int | None = None,  # noqa: ARG002
    ) -> Slot:
        """:meth:`publish` without waiting: a batch of one, done."""
        done: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        done.set_result(Delivery(topic, -1, -1))
        return done, 0

    async def check(self, timeout_s: float) -> None:
        """Always reachable."""


class SourceMissing(RuntimeError):
    """The topic to redrive from does not exist."""


class CommitFailed(RuntimeError):
    """The group's offsets could not be committed in time (the next run reads those records again)."""


class Progress:
    """Progress on stderr: a bar redrawn in place on a terminal, a plain line now and then otherwise."""

    def __init__(self, err: TextIO, source: str, *, terminal: bool | None = None) -> None:
        self._err = err
        self._source = source
        self._terminal = err.isatty() if terminal is None else terminal
        self._shown_at = time.monotonic()  # the first line after a period, the last at the end
        self._drawn = False

    def update(self, totals: Totals, total: int | None, *, final: bool = False) -> None:
        """Show where the run is; ``total``: records in this run's range, when known."""
        now = time.monotonic()
        every = _BAR_EVERY_S if self._terminal else _PROGRESS_EVERY_S
        if not final and now - self._shown_at < every:
            return
        self._shown_at = now
        t = totals.as_json()
        counts = (
            f"published {t['published']}  duplicates {t['duplicates']}  filtered {t['filtered']}  "
            f"in place {t[IN_PLACE]}  invalid {t[INVALID]}  {t['rate_per_s']}/s"
        )
        done = totals.handled
        if self._terminal:
            if total:
                filled = min(_BAR_WIDTH, _BAR_WIDTH * done // total)
                bar = "#" * filled + "-" * (_BAR_WIDTH - filled)
                line = f"\r{self._source} [{bar}] {done}/{total}  {counts}"
            else:
                line = f"\r{self._source} {done}  {counts}"
            self._err.write(line + ("\n" if final else "\x1b[K"))
            self._drawn = not final
        else:
            of = f"/{total}" if total is not None else ""
            self._err.write(f"redrive {self._source}: {done}{of} records  {counts}\n")
        self._err.flush()

    def interrupt_line(self) -> None:
        """End a bar being drawn, so a message does not overwrite it."""
        if self._drawn:
            self._err.write("\n")
            self._drawn = False


class Redrive:
    """One run over one source topic."""

    def __init__(self, settings: Settings, options: Options, pipeline: Pipeline, progress: Progress) -> None:
        self._settings = settings
        self._options = options
        self._pipeline = pipeline
        self._progress = progress
        self._router = Router(settings.topics, settings.record_mode)
        self.totals = Totals()
        self.group = group_id(settings, options.source)
        #: Next offset to read per partition (committed at the end of each chunk).
        self.positions: dict[TopicPartition, int] = {}
        #: Each partition's high watermark when first fetched: the run reads up to it.
        self.ends: dict[TopicPartition, int] = {}
        #: Offsets this run committed, by partition number.
        self.committed: dict[int, int] = {}
        self._stored: dict[TopicPartition, int] = {}
        self.stopping: str | None = None
        self.limit_reached = False

    def _consumer(self) -> AIOKafkaConsumer:
        kafka = self._settings.kafka
        return AIOKafkaConsumer(
            bootstrap_servers=list(kafka.bootstrap_servers),
            client_id=f"{kafka.client_id}-redrive",
            group_id=self.group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            fetch_max_wait_ms=_FETCH_WAIT_MS,
            request_timeout_ms=int(max(kafka.publish_timeout_s, 10.0) * 1000),
            **client_options(kafka.security),
        )

    def remaining(self) -> int | None:
        """Records left after this run in its partitions (``None`` until every end is known)."""
        if not self.positions or len(self.ends) < len(self.positions):
            return None
        return sum(max(0, self.ends[tp] - position) for tp, position in self.positions.items())

    def _total(self, starts: dict[TopicPartition, int]) -> int | None:
        if len(self.ends) < len(starts):
            return None
        total = sum(max(0, self.ends[tp] - start) for tp, start in starts.items())
        if self._options.limit is not None:
            total = min(total, self._options.limit)
        return total

    async def run(self) -> None:
        """Read, redrive and commit chunk after chunk until done, limited, stopped or failed."""
        consumer = self._consumer()
        await consumer.start()
        try:
            if self._options.source not in await consumer.topics():  # fresh metadata
                raise SourceMissing(f"topic {self._options.source!r} does not exist")
            partitions = sorted(
                TopicPartition(self._options.source, p)
                for p in consumer.partitions_for_topic(self._options.source) or ()
            )
            consumer.assign(partitions)
            # The group's committed offsets, else the beginning (auto_offset_reset).
            starts = {tp: await consumer.position(tp) for tp in partitions}
            self.positions = dict(starts)
            self._stored = dict(starts)
            active = set(partitions)
            while active and self.stopping is None and not self.limit_reached:
                batches = await consumer.getmany(
                    *active, timeout_ms=_FETCH_WAIT_MS, max_records=CHUNK_RECORDS
                )
                for tp in active:
                    highwater = consumer.highwater(tp)
                    if highwater is not None:
                        self.ends.setdefault(tp, highwater)
                try:
                    finished = await self._chunk(batches)
                    await self._past_gaps(consumer, active - batches.keys())
                finally:  # also what was acknowledged before a failure
                    await self._commit(consumer)
                for tp in list(active):
                    end = self.ends.get(tp)
                    if tp in finished or (end is not None and self.positions[tp] >= end):
                        active.discard(tp)
                        consumer.pause(tp)
                self._progress.update(self.totals, self._total(starts))
            self._progress.update(self.totals, self._total(starts), final=True)
        finally:
            try:
                async with asyncio.timeout(_COMMIT_TIMEOUT_S):
                    await consumer.stop()
            except TimeoutError:
                self._progress.interrupt_line()

    async def _chunk(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> set[TopicPartition]:
        """Handle one fetch's records concurrently; the partitions this run is done with."""
        finished: set[TopicPartition] = set()
        taken: list[tuple[TopicPartition, ConsumerRecord]] = []
        for tp, records in sorted(batches.items()):
            for record in records:
                if self._beyond(tp, record):
                    finished.add(tp)
                    break
                if self._options.since is not None and record.timestamp / 1000 < self._options.since:
                    self.totals.read += 1
                    self.totals.before_since += 1
                    self.positions[tp] = record.offset + 1
                    continue
                limit = self._options.limit
                if limit is not None and self.totals.handled + len(taken) >= limit:
                    self.limit_reached = True
                    break
                taken.append((tp, record))
        self.totals.read += len(taken)
        results = await asyncio.gather(*(self._one(record) for _, record in taken), return_exceptions=True)
        self._account(taken, results)
        return finished

    async def _past_gaps(self, consumer: AIOKafkaConsumer, quiet: set[TopicPartition]) -> None:
        """Move quiet partitions' positions up to the consumer's, past offsets that hold no record.

        Compaction and transaction markers leave such gaps; without this a partition
        whose last offsets are gone would never reach its end. A partition without
        records this time had every record before the consumer's position handled.
        """
        for tp in quiet:
            position = await consumer.position(tp)
            end = self.ends.get(tp)
            if end is not None and self.positions[tp] < position <= end:
                self.positions[tp] = position

    def _beyond(self, tp: TopicPartition, record: ConsumerRecord) -> bool:
        """True from the first record of ``tp`` that is not this run's.

        Those written after the run started, or after ``--until``: they stay for a
        later run (not committed past).
        """
        end = self.ends.get(tp)
        if end is not None and record.offset >= end:
            return True
        return self._options.until is not None and record.timestamp / 1000 > self._options.until

    def _account(
        self,
        taken: list[tuple[TopicPartition, ConsumerRecord]],
        results: list[_Result | BaseException],
    ) -> None:
        """Count the outcomes; advance each partition up to its first failure, then raise that."""
        failure: BaseException | None = None
        failed: set[TopicPartition] = set()
        for (tp, record), result in zip(taken, results, strict=True):
            if tp in failed:
                continue
            if isinstance(result, BaseException):
                failure = failure or result
                failed.add(tp)
                continue
            self.totals.outcomes[result.outcome] += 1
            if result.topic is not None:
                self.totals.published_to[result.topic] += 1
            self.positions[tp] = record.offset + 1
        if failure is not None:
            raise failure

    async def _one(self, record: ConsumerRecord) -> _Result:
        try:
            body = original_event(record.headers or (), record.value)
            parsed = parse_event(body)
        except InvalidEvent as exc:
            self.totals.invalid_reasons[exc.reason] += 1
            return _Result(INVALID)
        if isinstance(parsed, Event) and self._router.topic_for(parsed.type) == self._options.source:
            return _Result(IN_PLACE)
        outcome = await self._pipeline.ingest(body, CLOUDEVENTS_MEDIA_TYPE, time.time())
        topic = outcome.delivery.topic if outcome.outcome == "published" and outcome.delivery else None
        return _Result(outcome.outcome, topic)

    async def _commit(self, consumer: AIOKafkaConsumer) -> None:
        """Commit every partition's position once the dedupe keys written so far reached Kafka."""
        changed = {tp: position for tp, position in self.positions.items() if self._stored[tp] != position}
        if self._options.dry_run or not changed:
            return
        # The events are acknowledged; their keys should reach the state topic before the
        # source records count as done, so running bridges know them whatever happens next.
        await self._pipeline.settle_background(_COMMIT_TIMEOUT_S)
        offsets = {tp: OffsetAndMetadata(position, "redrive") for tp, position in changed.items()}
        try:
            async with asyncio.timeout(_COMMIT_TIMEOUT_S):
                await consumer.commit(offsets)
        except TimeoutError:
            raise CommitFailed(f"committing the group's offsets took over {_COMMIT_TIMEOUT_S:g} s") from None
        for tp, position in changed.items():
            self._stored[tp] = position
            self.committed[tp.partition] = position


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str
    topic: str | None = None


async def run_once(
    settings: Settings,
    options: Options,
    *,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
    terminal: bool | None = None,
) -> int:
    """``altinn-bridge redrive``: 0 when the run's records are handled, 1 on failure, 130 when stopped.

    Progress goes to ``err`` (a bar when it is a terminal), the summary (JSON) to ``out``.
    """
    metrics = Metrics(CollectorRegistry())
    publisher: Publisher = DryRunPublisher() if options.dry_run else KafkaPublisher(settings.kafka)
    pipeline = Pipeline(settings, publisher, metrics)
    follower = DedupeFollower(settings, pipeline, metrics)
    progress = Progress(err, options.source, terminal=terminal)
    redrive = Redrive(settings, options, pipeline, progress)
    summary: dict[str, object] = {
        "from": options.source,
        "group": redrive.group,
        "dry_run": options.dry_run,
    }
    code = 0
    kafka_dedupe = settings.dedupe.mode is DedupeMode.KAFKA
    following: asyncio.Task[None] | None = None
    with _stop_on_signals(redrive):
        try:
            await publisher.start()
            if kafka_dedupe:
                await follower.load()
                pipeline.lifecycle.window_loaded()
                following = asyncio.create_task(follower.follow(), name="dedupe-follow")
            await redrive.run()
        except (
            BridgeError,
            PublishError,
            KafkaError,
            SourceMissing,
            CommitFailed,
            StateTopicMissing,
            OSError,
        ) as exc:
            detail = getattr(exc, "detail", None) or str(exc) or type(exc).__name__
            summary["error"] = detail
            progress.interrupt_line()
            print(f"altinn-bridge redrive: {detail}", file=err)
            code = 1
        finally:
            if following is not None:
                following.cancel()
                await asyncio.gather(following, return_exceptions=True)
            await follower.stop()
            await pipeline.settle_background(_COMMIT_TIMEOUT_S)
            try:
                async with asyncio.timeout(_COMMIT_TIMEOUT_S):
                    await publisher.stop()
            except TimeoutError:
                print("altinn-bridge redrive: producer stop timed out", file=err)
    summary.update(redrive.totals.as_json())
    summary["committed"] = {str(p): o for p, o in sorted(redrive.committed.items())}
    summary["remaining"] = redrive.remaining()
    summary["limit_reached"] = redrive.limit_reached
    if redrive.stopping is not None:
        summary["interrupted"] = redrive.stopping
        code = code or EXIT_INTERRUPTED
    print(orjson.dumps(summary).decode(), file=out, flush=True)
    return code


@contextlib.contextmanager
def _stop_on_signals(
    redrive: Redrive, signals: Sequence[signal.Signals] = (signal.SIGINT, signal.SIGTERM)
) -> Iterator[None]:
    """SIGINT/SIGTERM: finish the chunk in hand, commit it, print the summary; a second one aborts."""
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    installed = []
    for sig in signals:
        try:
            loop.add_signal_handler(sig, _stop, redrive, sig.name, task)
        except (NotImplementedError, RuntimeError, ValueError):  # not the main thread, or no such signal
            continue
        installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _stop(redrive: Redrive, name: str, task: asyncio.Task[object] | None) -> None:
    if redrive.stopping is not None and task is not None:
        task.cancel()  # asked twice: stop now (the records in hand are read again next time)
    redrive.stopping = name
