"""One event's way through the bridge: parse → decide → publish → outcome.

Transport-agnostic: the HTTP view hands it bytes and gets an :class:`Outcome`
back or a :class:`~bridge.errors.BridgeError` raised. Every call is counted
once in the events metric, whatever happens.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime

from bridge.config import InvalidEventPolicy, Settings
from bridge.errors import BridgeError, InvalidEventRejected, KafkaUnavailable, PublishError
from bridge.events import Event, InvalidEvent, ValidationHandshake, parse_event
from bridge.filters import Filters
from bridge.metrics import Metrics, type_label
from bridge.publisher import Delivery, Publisher
from bridge.routing import Headers, Router

#: Seconds a sender is asked to wait before retrying after a 503.
RETRY_AFTER_S = 5


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
    """Validates, filters, routes and publishes events; built once per app."""

    def __init__(self, settings: Settings, publisher: Publisher, metrics: Metrics) -> None:
        self._policy = settings.invalid_event_policy
        self._deadletter_topic = settings.topics.deadletter
        self._router = Router(settings.topics)
        self._filters = Filters(settings.filters)
        self._publisher = publisher
        self._metrics = metrics

    async def ingest(self, body: bytes, content_type: str, received_at: float) -> Outcome:
        """Handle one structured-mode body received at ``received_at`` (epoch seconds)."""
        try:
            parsed = parse_event(body)
        except InvalidEvent as exc:
            return await self._counted("other", self._invalid(body, content_type, received_at, exc))
        if isinstance(parsed, ValidationHandshake):
            self._metrics.events.labels("validation", "validatesubscription").inc()
            return Outcome("validation", event_id=parsed.id)
        return await self._counted(type_label(parsed.type), self._event(parsed, received_at))

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
            self._metrics.events.labels(outcome, label).inc()

    async def _event(self, event: Event, received_at: float) -> Outcome:
        if event.time_parsed is not None:
            age = received_at - event.time_parsed.timestamp()
            self._metrics.event_age_seconds.observe(max(age, 0.0))
        filtered_by = self._filters.rejects(event)
        if filtered_by is not None:
            return Outcome("filtered", event_id=event.id, event_type=event.type, filtered_by=filtered_by)
        route = self._router.route(event)
        delivery = await self._publish(route.topic, route.key, event.raw, route.headers)
        return Outcome("published", event_id=event.id, event_type=event.type, delivery=delivery)

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

    async def _publish(self, topic: str, key: bytes | None, value: bytes, headers: Headers) -> Delivery:
        started = time.perf_counter()
        try:
            delivery = await self._publisher.publish(topic, key, value, headers)
        except PublishError as exc:
            self._metrics.publish_seconds.labels("error").observe(time.perf_counter() - started)
            self._metrics.producer_errors.labels(exc.kind).inc()
            raise KafkaUnavailable(exc.detail, retry_after_s=RETRY_AFTER_S) from exc
        self._metrics.publish_seconds.labels("ok").observe(time.perf_counter() - started)
        return delivery

    def topics(self) -> list[str]:
        """Every topic this configuration may write to."""
        return self._router.all_topics()


def _rfc3339(epoch_s: float) -> str:
    return datetime.fromtimestamp(epoch_s, UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
