"""One event's way through the bridge: parse → filter → dedupe → route → publish → outcome.

Transport-agnostic: the HTTP view hands it bytes and gets an :class:`Outcome`
(or a :class:`Ticket` to settle) back, or a :class:`~bridge.errors.BridgeError`
raised. Every event is counted once in the events metric, whatever happens.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from bridge.config import DedupeMode, InvalidEventPolicy, Settings
from bridge.dedupe import ORIGIN_HEADER, Dedupe, Seen, dedupe_key
from bridge.errors import (
    BridgeError,
    DedupeNotReady,
    InvalidEventRejected,
    KafkaUnavailable,
    PublishError,
)
from bridge.events import (
    Event,
    InvalidEvent,
    ValidationHandshake,
    event_from_json,
    parse_event,
    structured_from_binary,
)
from bridge.filters import Filters
from bridge.http_contract import CLOUDEVENTS_MEDIA_TYPE, RETRY_AFTER_S
from bridge.lifecycle import Admission, Lifecycle
from bridge.logs import get_logger
from bridge.metrics import Metrics, type_label
from bridge.personal_data import mask_national_ids
from bridge.publisher import Delivery, Publisher, delivery_at
from bridge.routing import Headers, Router

_log = get_logger("bridge.pipeline")


@dataclass(slots=True)
class Outcome:
    """What happened to one accepted body (always answered 2xx)."""

    outcome: str
    event_id: str | None = None
    event_type: str | None = None
    delivery: Delivery | None = None
    filtered_by: str | None = None
    reason: str | None = None
    detail: str | None = None
    field: str | None = None

    def as_json(self) -> dict[str, object]:
        """The response body: only the fields that apply."""
        body: dict[str, object] = {"outcome": self.outcome}
        if self.event_id is not None:
            body["event_id"] = self.event_id
        if self.filtered_by is not None:
            body["filtered_by"] = self.filtered_by
        if self.reason is not None:
            body["reason"] = self.reason
            body["detail"] = self.detail
            if self.field is not None:
                body["field"] = self.field
        elif self.detail is not None:
            body["detail"] = self.detail
        if self.delivery is not None:
            topic, partition, offset = self.delivery
            body["topic"] = topic
            body["partition"] = partition
            body["offset"] = offset
        return body


@dataclass(slots=True)
class Ticket:
    """An event on its way to Kafka: where its record sits in a batch, or the delivery it waits for.

    :meth:`Pipeline.take` hands it out synchronously; :meth:`Pipeline.settle` awaits
    the batch's one future (shared by every record in the batch) and gives the outcome.
    """

    label: str
    event_id: str | None
    event_type: str | None
    #: The record's batch and index in it (None for a duplicate of a delivery in flight).
    first: asyncio.Future[Delivery] | None
    index: int
    #: The dedupe key this delivery reserved, committed once Kafka acknowledged.
    key: bytes | None = None
    #: A duplicate of a delivery still in flight: that record's place (batch future, index).
    wait: object | None = None
    #: A body that can never be valid, dead-lettered.
    invalid: InvalidEvent | None = None
    started: float = 0.0


class Pipeline:
    """Validates, filters, dedupes, routes and publishes events; built once per app.

    Every event is one synchronous pass (:meth:`take`: parse, filter, dedupe, route,
    append to the partition's Kafka batch) and one wait (:meth:`settle`: the batch's
    future). No task and no future per event; a batch of events is one pass over the array.
    """

    def __init__(
        self,
        settings: Settings,
        publisher: Publisher,
        metrics: Metrics,
        lifecycle: Lifecycle | None = None,
        admission: Admission | None = None,
    ) -> None:
        """``lifecycle`` and ``admission`` are the app's; a pipeline used on its own makes its own."""
        self._policy = settings.invalid_event_policy
        self._deadletter_topic = settings.topics.deadletter
        self._router = Router(settings.topics, settings.record_mode)
        self._filters = Filters(settings.filters)
        self._publisher = publisher
        self._metrics = metrics
        if lifecycle is None:
            lifecycle = Lifecycle(needs_dedupe_window=settings.dedupe.mode is DedupeMode.KAFKA)
        self.lifecycle = lifecycle
        self._admission = admission or Admission(lifecycle, settings.http.max_in_flight)
        self._publish_timeout_s = settings.kafka.publish_timeout_s
        #: State-record batches not yet acknowledged, and how many records each holds.
        self._background: dict[asyncio.Future[Delivery], int] = {}
        #: None when dedupe is off; otherwise the window, also fed by the state follower.
        self.dedupe = (
            None
            if settings.dedupe.mode is DedupeMode.OFF
            else Dedupe(settings.dedupe.window_s, settings.dedupe.max_entries)
        )
        self._state_topic = settings.dedupe.topic if settings.dedupe.mode is DedupeMode.KAFKA else None
        # Metric children, looked up once: label values are bounded (type_label), so is this cache.
        self._events: dict[tuple[str, str], Any] = {}
        self._publish_ok = metrics.publish_seconds.labels("ok")
        self._publish_error = metrics.publish_seconds.labels("error")
        self._redeliveries = {p: metrics.redeliveries.labels(p) for p in ("published", "in_flight", "failed")}
        #: Per type label: the gauge child and when it was last set (set at most once a second).
        self._last_event: dict[str, tuple[Any, float]] = {}
        #: When the dedupe-entries gauge was last set (at most once a second, and on evictions); one
        #: process reads the window's size when scraped instead (the gauge cannot be a function in
        #: prometheus-client's multiprocess mode, where each worker writes its own value).
        self._entries_written = settings.process.metrics_dir is not None
        self._entries_at = 0.0
        if self.dedupe is not None and not self._entries_written:
            metrics.dedupe_entries.set_function(self.dedupe.__len__)
        #: Marks this process's state records, which its own follower need not read back.
        self.origin = os.urandom(8).hex().encode()

    # -- one body -------------------------------------------------------------------------

    async def ingest(self, body: bytes, content_type: str, received_at: float) -> Outcome:
        """Handle one structured-mode body received at ``received_at`` (epoch seconds)."""
        taken = self.take(body, content_type, received_at)
        return taken if type(taken) is Outcome else await self.settle(taken)  # type: ignore[arg-type]

    async def ingest_binary(
        self, headers: Iterable[tuple[str, str]], body: bytes, content_type: str, received_at: float
    ) -> Outcome:
        """Handle one HTTP binary-mode event (attributes in ``ce-*`` headers, data in ``body``)."""
        taken = self.take_binary(headers, body, content_type, received_at)
        return taken if type(taken) is Outcome else await self.settle(taken)  # type: ignore[arg-type]

    def take(self, body: bytes, content_type: str, received_at: float) -> Outcome | Ticket:
        """The synchronous pass over one structured-mode body: an outcome now, or a ticket to settle.

        Raises :class:`BridgeError` (counted) when the event is refused.
        """
        return self._take(body, None, content_type, received_at)

    def _take(self, body: bytes, item: object, content_type: str, received_at: float) -> Outcome | Ticket:
        """:meth:`take` of ``body``, or of a batch's ``item`` already parsed (``body`` is its JSON)."""
        try:
            parsed = parse_event(body) if item is None else event_from_json(body, item)
        except InvalidEvent as exc:
            return self._invalid(body, content_type, received_at, exc)
        if type(parsed) is ValidationHandshake:
            self._count("validation", "validatesubscription")
            return Outcome("validation", event_id=parsed.id)
        return self._take_event(parsed, received_at)  # type: ignore[arg-type]

    def take_binary(
        self, headers: Iterable[tuple[str, str]], body: bytes, content_type: str, received_at: float
    ) -> Outcome | Ticket:
        """:meth:`take` for an HTTP binary-mode event."""
        pairs = list(headers)
        try:
            structured = structured_from_binary(pairs, body)
        except InvalidEvent as exc:
            sent_id = next((v for k, v in pairs if k.lower() == "ce-id"), None)
            if sent_id:
                # Header bytes that are not UTF-8 arrive as surrogate escapes; they cannot be
                # written to JSON (answer, log line), so they become U+FFFD.
                readable = sent_id.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                exc.event_id = mask_national_ids(readable[:128])
            return self._invalid(body, content_type, received_at, exc)
        return self.take(structured, CLOUDEVENTS_MEDIA_TYPE, received_at)

    async def settle(self, ticket: Ticket) -> Outcome:
        """Wait for the ticket's Kafka batch (or the delivery it duplicates): the outcome.

        Raises :class:`KafkaUnavailable` (counted) when Kafka did not acknowledge.
        """
        future = ticket.first if ticket.first is not None else _place_future(ticket.wait)
        if future is not None:
            try:
                await future
            except PublishError:
                pass  # read by finish()
            except BaseException:
                self._abandon(ticket)
                raise
        return self.finish(ticket)

    def finish(self, ticket: Ticket) -> Outcome:
        """The outcome of a ticket whose batch has been answered (see :meth:`settle`)."""
        if ticket.first is None:
            return self._duplicate_in_flight(ticket)
        exc = ticket.first.exception()
        if exc is not None:
            raise self._not_acknowledged(ticket, exc) from exc  # type: ignore[arg-type]
        self._admission.leave_publish()
        now = time.time()
        if ticket.index == 0:  # one observation per Kafka batch: its first record waited longest
            self._publish_ok.observe(time.perf_counter() - ticket.started)
        delivery = delivery_at(ticket.first.result(), ticket.index)
        if ticket.invalid is not None:
            self._count("dead_lettered", "other")
            invalid = ticket.invalid
            return Outcome(
                "dead_lettered",
                event_id=invalid.event_id,
                reason=invalid.reason,
                detail=invalid.detail,
                field=invalid.field,
                delivery=delivery,
            )
        dedupe = self.dedupe
        if ticket.key is not None and dedupe is not None:
            seen = Seen(now, *delivery)
            dedupe.commit(ticket.key, seen)
            self._count_evictions(dedupe)
            # Not awaited: the answer needs only the event's acknowledgement. Should the bridge die
            # before the state record is written, the next start finds the event by reading the
            # offsets no state record covers (bridge.dedupe_store).
            self.record_state(ticket.key, seen, ticket.event_id or "")
        label = ticket.label
        self._count("published", label)
        last = self._last_event.get(label)
        if last is None or now - last[1] >= 1.0:
            child = last[0] if last is not None else self._metrics.last_event.labels(label)
            child.set(now)
            self._last_event[label] = (child, now)
        return Outcome("published", event_id=ticket.event_id, event_type=ticket.event_type, delivery=delivery)

    def _abandon(self, ticket: Ticket) -> None:
        """The wait for the ticket's batch was cancelled (the bridge is stopping)."""
        if ticket.first is None:
            self._count("error", ticket.label)
            return
        self._admission.leave_publish()
        if ticket.key is not None and self.dedupe is not None:
            self.dedupe.release(ticket.key)
        self._count("error", ticket.label)

    # -- a batch ------------------------------------------------------------------------------

    async def ingest_batch(self, items: list[object], received_at: float) -> list[dict[str, object]]:
        """Handle each element of a batch; one result per element, in order.

        One synchronous pass over the array appends every record to its partition's
        Kafka batch; then each Kafka batch's future is awaited once, and a second
        synchronous pass gives every element its outcome. No coroutine per element. An
        element that could not be handled gets its error's outcome, status and detail,
        and ``retryable`` when resending can help.
        """
        taken: list[Outcome | Ticket | BridgeError] = []
        for item in items:
            try:
                taken.append(self._take_item(item, received_at))
            except BridgeError as exc:
                taken.append(exc)
        tickets = [t for t in taken if type(t) is Ticket]
        waits = {f for t in tickets if (f := t.first or _place_future(t.wait)) is not None}
        try:
            for future in waits:
                if not future.done():
                    await asyncio.wait((future,))
        except BaseException:
            for ticket in tickets:
                self._abandon(ticket)
            raise
        results: list[dict[str, object]] = []
        for index, took in enumerate(taken):
            result = took
            if type(took) is Ticket:
                try:
                    result = self.finish(took)
                except BridgeError as exc:
                    result = exc
            results.append(_result_row(index, result))  # type: ignore[arg-type]
        return results

    def _take_item(self, item: object, received_at: float) -> Outcome | Ticket:
        """One element of a batch, already parsed from the array: no second JSON parse."""
        return self._take(orjson.dumps(item), item, CLOUDEVENTS_MEDIA_TYPE, received_at)

    # -- the pass -----------------------------------------------------------------------------

    def _take_event(self, event: Event, received_at: float) -> Outcome | Ticket:
        label = type_label(event.type)
        if event.time_parsed is not None:
            self._metrics.event_age_seconds.observe(max(received_at - event.time_parsed.timestamp(), 0.0))
        filtered_by = self._filters.rejects(event)
        if filtered_by is not None:
            self._count("filtered", label)
            return Outcome("filtered", event_id=event.id, event_type=event.type, filtered_by=filtered_by)
        dedupe = self.dedupe
        if dedupe is None:
            return self._publish(event, label, None)
        if not self.lifecycle.dedupe_ready:
            self._count("unavailable", label)
            raise DedupeNotReady(
                "the bridge is still loading its dedupe window from Kafka; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        key = dedupe_key(event.source, event.id)
        seen, wait, previous = dedupe.claim(key, self._router.topic_for(event.type))
        if previous is not None:
            self._redeliveries[previous].inc()
        if seen is not None:
            self._count("duplicate", label)
            delivery = Delivery(seen.topic, seen.partition, seen.offset)
            return Outcome("duplicate", event_id=event.id, event_type=event.type, delivery=delivery)
        if previous == "in_flight":
            return Ticket(label, event.id, event.type, None, 0, wait=wait)
        try:
            ticket = self._publish(event, label, key)
        except BaseException:
            dedupe.release(key)
            raise
        dedupe.hold(key, (ticket.first, ticket.index))
        return ticket

    def _publish(self, event: Event, label: str, key: bytes | None) -> Ticket:
        """Route the event and append its record to its Kafka batch."""
        route = self._router.route(event)
        first, index = self._append(
            route.topic, route.key, route.value, route.headers, event_id=event.id, label=label
        )
        return Ticket(label, event.id, event.type, first, index, key=key, started=time.perf_counter())

    def _append(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        headers: Headers,
        *,
        event_id: str | None,
        label: str,
    ) -> tuple[asyncio.Future[Delivery], int]:
        """Admit one more record waiting for Kafka and append it to its batch."""
        try:
            self._admission.enter_publish(event_id)
        except BridgeError as exc:
            self._count(exc.outcome, label)
            raise
        return self._publisher.append(topic, key, value, headers)

    def _duplicate_in_flight(self, ticket: Ticket) -> Outcome:
        """The outcome of an identical delivery that was in flight, once its batch was answered."""
        future = _place_future(ticket.wait)
        if future is None:  # reserved, its record not appended: cannot happen within one pass
            detail = "an identical delivery of this event (same source and id) is starting; retry"
        elif (exc := future.exception()) is not None:
            detail = (
                "an identical delivery of this event (same source and id) is still waiting for Kafka"
                if isinstance(exc, PublishError) and exc.kind == "timeout"
                else "an identical delivery of this event (same source and id) failed to reach Kafka"
            )
        else:
            self._count("duplicate", ticket.label)
            delivery = delivery_at(future.result(), ticket.wait[1])  # type: ignore[index]
            return Outcome(
                "duplicate", event_id=ticket.event_id, event_type=ticket.event_type, delivery=delivery
            )
        self._count("unavailable", ticket.label)
        raise KafkaUnavailable(detail, retry_after_s=RETRY_AFTER_S, event_id=ticket.event_id)

    def _not_acknowledged(self, ticket: Ticket, exc: PublishError) -> KafkaUnavailable:
        """Kafka did not take the ticket's record: count it, settle its key, the 503 to raise."""
        self._admission.leave_publish()
        if ticket.index == 0:
            self._publish_error.observe(time.perf_counter() - ticket.started)
        self._metrics.producer_errors.labels(exc.kind).inc()
        unavailable = KafkaUnavailable(exc.detail, retry_after_s=RETRY_AFTER_S, event_id=ticket.event_id)
        unavailable.late = exc.late
        dedupe = self.dedupe
        if ticket.key is not None and dedupe is not None:
            if exc.late is None:
                dedupe.release(ticket.key)
            else:  # still in the producer: the key follows the record's real outcome
                self._settle_later(dedupe, ticket.key, exc.late, ticket.index, ticket.event_id or "")
        self._count("unavailable", ticket.label)
        return unavailable

    def count_refused(self, outcome: str) -> None:
        """A request refused before any event in it was handled (auth aside): counted as type ``other``."""
        self._count(outcome, "other")

    def _count(self, outcome: str, label: str) -> None:
        """The one place the events metric moves: once per event or refused request, whatever happened."""
        child = self._events.get((outcome, label))
        if child is None:
            child = self._events[outcome, label] = self._metrics.events.labels(outcome, label)
        child.inc()

    async def settle_background(self, timeout_s: float) -> int:
        """Wait (at most ``timeout_s``) for state-record writes still running; how many were cut short."""
        if not self._background:
            return 0
        pending = dict(self._background)
        _, left = await asyncio.wait(set(pending), timeout=timeout_s)
        return sum(pending[f] for f in left)

    def _settle_later(
        self, dedupe: Dedupe, key: bytes, late: asyncio.Future[Delivery], index: int, event_id: str
    ) -> None:
        """Commit or release ``key`` when a record whose wait timed out is acknowledged or fails.

        The sender got 503 and will retry; if the record did land, the retry must be
        a duplicate, not a second copy.
        """

        def settle(done: asyncio.Future[Delivery]) -> None:
            if done.cancelled() or done.exception() is not None:
                dedupe.release(key)
                return
            delivery = delivery_at(done.result(), index)
            seen = Seen(time.time(), delivery.topic, delivery.partition, delivery.offset)
            dedupe.commit(key, seen)
            self._count_evictions(dedupe)
            self._metrics.late_acknowledgements.inc()
            _log.info(
                "late acknowledgement; a retry will be a duplicate", event_id=event_id, topic=seen.topic
            )
            self.record_state(key, seen, event_id)

        late.add_done_callback(settle)

    def record_state(self, key: bytes, seen: Seen, event_id: str) -> None:
        """Write the committed key to the state topic, for restarts and other replicas.

        Not awaited: the record joins its partition's batch and the batch's outcome is
        handled by one callback per batch. The key is a BLAKE2b digest, so its first
        byte spreads the records over the partitions without murmur2. A failure is
        logged and counted. This process still knows the key, and a restart finds the
        event again among the offsets no state record covers (see :mod:`bridge.dedupe_store`).
        """
        if self._state_topic is None:
            return
        written, _ = self._publisher.append(
            self._state_topic,
            key.hex().encode(),
            seen.encode(event_id),
            [(ORIGIN_HEADER, self.origin)],
            spread=key[0],
        )
        count = self._background.get(written)
        if count is None:
            self._background[written] = 1
            written.add_done_callback(self._state_written)
        else:
            self._background[written] = count + 1

    def _state_written(self, written: asyncio.Future[Delivery]) -> None:
        count = self._background.pop(written, 1)
        if written.cancelled():
            return
        exc = written.exception()
        if exc is None:
            return
        self._metrics.dedupe_state_errors.labels("write").inc(count)
        detail = exc.detail if isinstance(exc, PublishError) else f"{type(exc).__name__}: {exc}"
        _log.warning("dedupe state not written", error=detail, topic=self._state_topic, records=count)

    def remember(self, key: bytes, seen: Seen) -> None:
        """A key published elsewhere (another replica, an earlier run)."""
        if self.dedupe is not None:
            self.dedupe.remember(key, seen)
            self._count_evictions(self.dedupe)

    def _count_evictions(self, dedupe: Dedupe) -> None:
        """Move the eviction counters when entries were dropped; the entries gauge at most once a second."""
        expired, full = dedupe.take_evictions()
        if expired:
            self._metrics.dedupe_evictions.labels("expired").inc(expired)
        if full:
            self._metrics.dedupe_evictions.labels("full").inc(full)
        now = time.monotonic()
        if self._entries_written and (expired or full or now - self._entries_at >= 1.0):
            self._entries_at = now
            self._metrics.dedupe_entries.set(len(dedupe))

    def _invalid(self, body: bytes, content_type: str, received_at: float, exc: InvalidEvent) -> Ticket:
        if self._policy is InvalidEventPolicy.REJECT:
            self._count("rejected", "other")
            raise InvalidEventRejected(exc.detail, reason=exc.reason, field=exc.field, event_id=exc.event_id)
        headers: Headers = [
            ("content-type", content_type.encode("utf-8", "replace")),
            ("dlq_reason", exc.reason.encode()),
            ("dlq_detail", exc.detail.encode("utf-8", "replace")),
            ("dlq_received_at", _rfc3339(received_at).encode()),
        ]
        if exc.field is not None:
            headers.append(("dlq_field", exc.field.encode()))
        first, index = self._append(
            self._deadletter_topic, None, body, headers, event_id=exc.event_id, label="other"
        )
        return Ticket("other", exc.event_id, None, first, index, invalid=exc, started=time.perf_counter())

    def topics(self) -> list[str]:
        """Every topic this configuration may write to."""
        return self._router.all_topics()


def _result_row(index: int, result: Outcome | BridgeError) -> dict[str, object]:
    """One element's entry in a batch's answer."""
    if type(result) is Outcome:
        row = result.as_json()
        row["index"] = index
        return row
    assert isinstance(result, BridgeError)  # noqa: S101 - the two kinds a batch element ends in
    return {
        "index": index,
        "outcome": result.outcome,
        "status": result.status,
        "detail": result.detail,
        "retryable": result.retryable,
        **result.extra,
    }


def _place_future(place: object) -> asyncio.Future[Delivery] | None:
    """The batch future of a place a dedupe owner holds (``(future, index)``), if any."""
    return place[0] if place is not None else None  # type: ignore[index]


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
