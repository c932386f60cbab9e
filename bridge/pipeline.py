"""One event's way through the bridge: parse → filter → dedupe → route → publish → outcome.

Transport-agnostic: the HTTP view hands it bytes and gets an :class:`Outcome`
back or a :class:`~bridge.errors.BridgeError` raised. Every call is counted
once in the events metric, whatever happens.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from bridge.config import DedupeMode, InvalidEventPolicy, Settings
from bridge.dedupe import Dedupe, Failed, Seen, dedupe_key
from bridge.errors import (
    BridgeError,
    DedupeNotReady,
    InvalidEventRejected,
    KafkaUnavailable,
    PublishError,
)
from bridge.events import Event, InvalidEvent, ValidationHandshake, parse_event, structured_from_binary
from bridge.filters import Filters
from bridge.http_contract import CLOUDEVENTS_MEDIA_TYPE, RETRY_AFTER_S
from bridge.lifecycle import Admission, Lifecycle
from bridge.logs import get_logger
from bridge.metrics import Metrics, type_label
from bridge.personal_data import mask_national_ids
from bridge.publisher import Delivery, Publisher
from bridge.routing import Headers, Router

_log = get_logger("bridge.pipeline")


@dataclass(frozen=True, slots=True)
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
        for name in ("event_id", "filtered_by", "reason", "detail", "field"):
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        if self.delivery is not None:
            body["topic"] = self.delivery.topic
            body["partition"] = self.delivery.partition
            body["offset"] = self.delivery.offset
        return body


class Pipeline:
    """Validates, filters, dedupes, routes and publishes events; built once per app."""

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
        #: State-record writes not yet acknowledged (awaited, bounded, before the producer stops).
        self._background: set[asyncio.Future[Delivery]] = set()
        #: None when dedupe is off; otherwise the window, also fed by the state follower.
        self.dedupe = (
            None
            if settings.dedupe.mode is DedupeMode.OFF
            else Dedupe(settings.dedupe.window_s, settings.dedupe.max_entries)
        )
        self._state_topic = settings.dedupe.topic if settings.dedupe.mode is DedupeMode.KAFKA else None

    async def ingest(self, body: bytes, content_type: str, received_at: float) -> Outcome:
        """Handle one structured-mode body received at ``received_at`` (epoch seconds)."""
        try:
            parsed = parse_event(body)
        except InvalidEvent as exc:
            return await self._counted("other", self._invalid(body, content_type, received_at, exc))
        if isinstance(parsed, ValidationHandshake):
            self._count("validation", "validatesubscription")
            return Outcome("validation", event_id=parsed.id)
        return await self._counted(type_label(parsed.type), self._event(parsed, received_at))

    async def ingest_binary(
        self, headers: Iterable[tuple[str, str]], body: bytes, content_type: str, received_at: float
    ) -> Outcome:
        """Handle one HTTP binary-mode event (attributes in ``ce-*`` headers, data in ``body``)."""
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
            return await self._counted("other", self._invalid(body, content_type, received_at, exc))
        return await self.ingest(structured, CLOUDEVENTS_MEDIA_TYPE, received_at)

    async def ingest_batch(self, items: list[object], received_at: float) -> list[dict[str, object]]:
        """Handle each element of a batch concurrently; one result per element, in order.

        An element that could not be handled gets its error's outcome, status and
        detail, and ``retryable`` when resending can help.
        """
        bodies = [orjson.dumps(item) for item in items]
        done = await asyncio.gather(
            *(self.ingest(body, CLOUDEVENTS_MEDIA_TYPE, received_at) for body in bodies),
            return_exceptions=True,
        )
        results: list[dict[str, object]] = []
        for index, result in enumerate(done):
            if isinstance(result, Outcome):
                results.append({"index": index, **result.as_json()})
            elif isinstance(result, BridgeError):
                results.append(
                    {
                        "index": index,
                        "outcome": result.outcome,
                        "status": result.status,
                        "detail": result.detail,
                        "retryable": result.retryable,
                        **result.extra,
                    }
                )
            else:
                raise result
        return results

    async def _counted(self, label: str, work: Awaitable[Outcome]) -> Outcome:
        outcome = "error"
        try:
            result = await work
        except BridgeError as exc:
            outcome = exc.outcome
            raise
        else:
            outcome = result.outcome
            return result
        finally:
            self._count(outcome, label)

    def count_refused(self, outcome: str) -> None:
        """A request refused before any event in it was handled (auth aside): counted as type ``other``."""
        self._count(outcome, "other")

    def _count(self, outcome: str, label: str) -> None:
        """The one place the events metric moves: once per event or refused request, whatever happened."""
        self._metrics.events.labels(outcome, label).inc()

    async def _event(self, event: Event, received_at: float) -> Outcome:
        if event.time_parsed is not None:
            age = received_at - event.time_parsed.timestamp()
            self._metrics.event_age_seconds.observe(max(age, 0.0))
        filtered_by = self._filters.rejects(event)
        if filtered_by is not None:
            return Outcome("filtered", event_id=event.id, event_type=event.type, filtered_by=filtered_by)
        if self.dedupe is None:
            delivery = await self._publish_event(event)
            return Outcome("published", event_id=event.id, event_type=event.type, delivery=delivery)
        return await self._deduped(self.dedupe, event)

    async def _deduped(self, dedupe: Dedupe, event: Event) -> Outcome:
        if not self.lifecycle.dedupe_ready:
            raise DedupeNotReady(
                "the bridge is still loading its dedupe window from Kafka; retry shortly",
                retry_after_s=RETRY_AFTER_S,
            )
        key = dedupe_key(event.source, event.id)
        claimed = dedupe.claim(key)
        if claimed.previous is not None:
            self._metrics.redeliveries.labels(claimed.previous).inc()
        seen = claimed.seen
        if claimed.wait is not None:
            seen = await self._first_delivery(claimed.wait, event.id)
        if seen is not None:
            delivery = Delivery(seen.topic, seen.partition, seen.offset)
            return Outcome("duplicate", event_id=event.id, event_type=event.type, delivery=delivery)

        try:
            delivery = await self._publish_event(event)
        except KafkaUnavailable as exc:
            if exc.late is None:
                dedupe.release(key)
            else:  # still in the producer: the key follows the record's real outcome
                self._settle_later(dedupe, key, exc.late, event.id)
            raise
        except BaseException:
            dedupe.release(key)
            raise
        seen = self._commit(dedupe, key, delivery)
        # Not awaited: the answer needs only the event's acknowledgement. Should the bridge die
        # before the state record is written, the next start finds the event by reading the
        # offsets no state record covers (bridge.dedupe_store).
        self.record_state(key, seen, event.id)
        return Outcome("published", event_id=event.id, event_type=event.type, delivery=delivery)

    async def settle_background(self, timeout_s: float) -> int:
        """Wait (at most ``timeout_s``) for state-record writes still running; how many were cut short."""
        if not self._background:
            return 0
        _, pending = await asyncio.wait(set(self._background), timeout=timeout_s)
        return len(pending)

    async def _first_delivery(self, wait: asyncio.Future[Seen], event_id: str) -> Seen:
        """Wait (at most the publish timeout) for an identical delivery in flight."""
        try:
            async with asyncio.timeout(self._publish_timeout_s):
                return await asyncio.shield(wait)
        except Failed:
            detail = "an identical delivery of this event (same source and id) failed to reach Kafka"
        except TimeoutError:
            detail = "an identical delivery of this event (same source and id) is still waiting for Kafka"
        raise KafkaUnavailable(detail, retry_after_s=RETRY_AFTER_S, event_id=event_id)

    def _commit(self, dedupe: Dedupe, key: bytes, delivery: Delivery) -> Seen:
        seen = Seen(time.time(), delivery.topic, delivery.partition, delivery.offset)
        dedupe.commit(key, seen)
        self._count_evictions(dedupe)
        return seen

    def _settle_later(
        self, dedupe: Dedupe, key: bytes, late: asyncio.Future[Delivery], event_id: str
    ) -> None:
        """Commit or release ``key`` when a record whose wait timed out is acknowledged or fails.

        The sender got 503 and will retry; if the record did land, the retry must be
        a duplicate, not a second copy.
        """

        def settle(done: asyncio.Future[Delivery]) -> None:
            if done.cancelled() or done.exception() is not None:
                dedupe.release(key)
                return
            seen = self._commit(dedupe, key, done.result())
            self._metrics.late_acknowledgements.inc()
            _log.info(
                "late acknowledgement; a retry will be a duplicate", event_id=event_id, topic=seen.topic
            )
            self.record_state(key, seen, event_id)

        late.add_done_callback(settle)

    def record_state(self, key: bytes, seen: Seen, event_id: str) -> None:
        """Write the committed key to the state topic, for restarts and other replicas.

        Not awaited: the record joins its partition's batch and the outcome is
        handled by a callback (no task per event). A failure is logged and
        counted. This process still knows the key, and a restart finds the event
        again among the offsets no state record covers (see :mod:`bridge.dedupe_store`).
        """
        if self._state_topic is None:
            return
        written = self._publisher.submit(self._state_topic, key.hex().encode(), seen.encode(event_id), [])
        self._background.add(written)
        written.add_done_callback(self._state_written)

    def _state_written(self, written: asyncio.Future[Delivery]) -> None:
        self._background.discard(written)
        if written.cancelled():
            return
        exc = written.exception()
        if exc is None:
            return
        self._metrics.dedupe_state_errors.labels("write").inc()
        detail = exc.detail if isinstance(exc, PublishError) else f"{type(exc).__name__}: {exc}"
        _log.warning("dedupe state not written", error=detail, topic=self._state_topic)

    def remember(self, key: bytes, seen: Seen) -> None:
        """A key published elsewhere (another replica, an earlier run)."""
        if self.dedupe is not None:
            self.dedupe.remember(key, seen)
            self._count_evictions(self.dedupe)

    def _count_evictions(self, dedupe: Dedupe) -> None:
        evictions = dedupe.take_evictions()
        if evictions.expired:
            self._metrics.dedupe_evictions.labels("expired").inc(evictions.expired)
        if evictions.full:
            self._metrics.dedupe_evictions.labels("full").inc(evictions.full)
        self._metrics.dedupe_entries.set(len(dedupe))

    async def _publish_event(self, event: Event) -> Delivery:
        route = self._router.route(event)
        return await self._publish(route.topic, route.key, route.value, route.headers, event.id)

    async def _invalid(
        self, body: bytes, content_type: str, received_at: float, exc: InvalidEvent
    ) -> Outcome:
        if self._policy is InvalidEventPolicy.REJECT:
            raise InvalidEventRejected(exc.detail, reason=exc.reason, field=exc.field, event_id=exc.event_id)
        headers: Headers = [
            ("content-type", content_type.encode("utf-8", "replace")),
            ("dlq_reason", exc.reason.encode()),
            ("dlq_detail", exc.detail.encode("utf-8", "replace")),
            ("dlq_received_at", _rfc3339(received_at).encode()),
        ]
        if exc.field is not None:
            headers.append(("dlq_field", exc.field.encode()))
        delivery = await self._publish(self._deadletter_topic, None, body, headers)
        return Outcome(
            "dead_lettered",
            event_id=exc.event_id,
            reason=exc.reason,
            detail=exc.detail,
            field=exc.field,
            delivery=delivery,
        )

    async def _publish(
        self, topic: str, key: bytes | None, value: bytes, headers: Headers, event_id: str | None = None
    ) -> Delivery:
        self._admission.enter_publish(event_id)
        started = time.perf_counter()
        try:
            delivery = await self._publisher.publish(topic, key, value, headers)
        except PublishError as exc:
            self._metrics.publish_seconds.labels("error").observe(time.perf_counter() - started)
            self._metrics.producer_errors.labels(exc.kind).inc()
            unavailable = KafkaUnavailable(exc.detail, retry_after_s=RETRY_AFTER_S, event_id=event_id)
            unavailable.late = exc.late
            raise unavailable from exc
        finally:
            self._admission.leave_publish()
        self._metrics.publish_seconds.labels("ok").observe(time.perf_counter() - started)
        return delivery

    def topics(self) -> list[str]:
        """Every topic this configuration may write to."""
        return self._router.all_topics()


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
