"""Prometheus metrics, built on an injected registry (tests use a fresh one).

Every label has a bounded set of values whatever is sent: event types are the
18 known names, ``validatesubscription`` or ``other``; routes are patterns.
"""

from __future__ import annotations

import platform
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from bridge import __version__
from bridge.events import CORRESPONDENCE_PREFIX, KNOWN_TYPES, VALIDATION_TYPE

#: Set (by the worker supervisor) when several processes share one set of metrics.

OUTCOMES: Final = (
    "published",
    "duplicate",
    "validation",
    "filtered",
    "dead_lettered",
    "rejected",
    "unavailable",
    "overloaded",
    "error",
)

#: Kinds of reconciler trouble (``altinn_bridge_reconcile_errors_total``); see bridge.reconciler.
RECONCILE_ERROR_KINDS: Final = (
    "rate_limited",
    "altinn_unavailable",
    "altinn",
    "token",
    "kafka",
    "cursor_store",
    "cursor_unknown",
    "rejected",
)

_LATENCY_BUCKETS: Final = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Altinn retries for ~35 h, so a redelivered event can be old.
_AGE_BUCKETS: Final = (
    0.5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600, 12 * 3600, 24 * 3600, 48 * 3600,
)  # fmt: skip


def type_label(event_type: object) -> str:
    """Bounded label for an event type: the known short name, ``validatesubscription`` or ``other``."""
    if not isinstance(event_type, str):
        return "other"
    lowered = event_type.lower()
    if lowered == VALIDATION_TYPE:
        return "validatesubscription"
    if lowered.startswith(CORRESPONDENCE_PREFIX):
        name = lowered[len(CORRESPONDENCE_PREFIX) :]
        if name in KNOWN_TYPES:
            return name
    return "other"


# aiohttp's pure-Python parser lets any token through as a method.
_KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def method_label(method: str) -> str:
    """Bounded label for an HTTP method: the standard ones as sent, anything else ``other``."""
    return method if method in _KNOWN_METHODS else "other"


class Metrics:
    """All of the bridge's metrics, registered on ``registry``."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.events = Counter(
            "altinn_bridge_events",
            "Events received on the events endpoint, by outcome and type.",
            ["outcome", "type"],
            registry=registry,
        )
        self.last_event = Gauge(
            "altinn_bridge_last_event_timestamp_seconds",
            "When an event of this type was last published (epoch seconds); by type, bounded as in "
            "altinn_bridge_events_total.",
            ["type"],
            registry=registry,
            multiprocess_mode="max",  # the newest over every worker, also one that has stopped
        )
        self.publish_seconds = Histogram(
            "altinn_bridge_publish_duration_seconds",
            "Time from a Kafka batch's first record joining it to the batch's acks=all acknowledgement "
            "(one observation per batch: its first record waited longest).",
            ["result"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.request_seconds = Histogram(
            "altinn_bridge_request_duration_seconds",
            "HTTP request duration by route pattern, method and status.",
            ["route", "method", "status"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.in_flight = Gauge(
            "altinn_bridge_requests_in_flight",
            "Requests being handled on the events endpoint.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.event_age_seconds = Histogram(
            "altinn_bridge_event_age_seconds",
            "Receive time minus the event's 'time' attribute (negative clock skew counts as 0).",
            buckets=_AGE_BUCKETS,
            registry=registry,
        )
        self.producer_errors = Counter(
            "altinn_bridge_kafka_producer_errors",
            "Records Kafka did not acknowledge, by error kind (timeout or Kafka error class).",
            ["error"],
            registry=registry,
        )
        self.redeliveries = Counter(
            "altinn_bridge_redeliveries",
            "Deliveries of an event the bridge had seen before (sender retries), by what the "
            "earlier delivery was: published, in_flight or failed.",
            ["previous"],
            registry=registry,
        )
        self.dedupe_entries = Gauge(
            "altinn_bridge_dedupe_entries",
            "Published (source, id) keys remembered in the dedupe window.",
            registry=registry,
            multiprocess_mode="livemax",  # workers share the window through the state topic
        )
        self.dedupe_evictions = Counter(
            "altinn_bridge_dedupe_evictions",
            "Keys dropped from the dedupe window: expired (older than the window) or full "
            "(BRIDGE_DEDUPE_MAX_ENTRIES reached; a redelivery of those would be published again).",
            ["reason"],
            registry=registry,
        )
        self.dedupe_state_errors = Counter(
            "altinn_bridge_dedupe_state_errors",
            "Failures writing or reading the dedupe state topic, by operation.",
            ["operation"],
            registry=registry,
        )
        self.auth_failures = Counter(
            "altinn_bridge_auth_failures",
            "Event requests refused before reading them: missing_token, wrong_token or address "
            "(not in BRIDGE_ALLOWED_NETWORKS).",
            ["reason"],
            registry=registry,
        )
        self.late_acknowledgements = Counter(
            "altinn_bridge_late_acknowledgements",
            "Records acknowledged after their request was answered 503 (publish timeout); the "
            "sender's retry is then answered duplicate.",
            registry=registry,
        )
        self.ready = Gauge(
            "altinn_bridge_ready",
            "1 when /readyz answers 200 (last evaluation), else 0.",
            registry=registry,
            multiprocess_mode="livemin",  # with workers: ready only when every one is
        )
        self.reconcile_fetched = Counter(
            "altinn_bridge_reconcile_fetched",
            "Events the reconciler fetched from Altinn's pull API.",
            registry=registry,
        )
        self.reconcile_repaired = Counter(
            "altinn_bridge_reconcile_repaired",
            "Events the reconciler published: ones no push had delivered (a pushed event is a duplicate).",
            registry=registry,
        )
        self.reconcile_skipped = Counter(
            "altinn_bridge_reconcile_skipped",
            "Fetched events older than the dedupe window, not published: the window cannot tell "
            "whether a push delivered them.",
            registry=registry,
        )
        self.reconcile_errors = Counter(
            "altinn_bridge_reconcile_errors",
            "Reconciler trouble by kind: rate_limited and altinn_unavailable (each retry of a 429 or "
            "5xx/lost connection), altinn (a pull that failed after its retries), token, kafka (a page "
            "not accepted; retried), cursor_store, cursor_unknown (Altinn restarted from its oldest "
            "event), rejected (an event refused under BRIDGE_INVALID_EVENT_POLICY=reject).",
            ["kind"],
            registry=registry,
        )
        self.reconcile_lag = Gauge(
            "altinn_bridge_reconcile_lag_seconds",
            "Now minus the 'time' of the newest event the reconciler has seen; 0 where it does not run.",
            registry=registry,
            multiprocess_mode="livemax",  # one worker reconciles; the others report 0
        )
        self.reconcile_cursor_age = Gauge(
            "altinn_bridge_reconcile_cursor_age_seconds",
            "Seconds since the reconciler last confirmed its cursor (stored a page, or found nothing "
            "new); 0 where it does not run.",
            registry=registry,
            multiprocess_mode="livemax",
        )
        self.reconcile_active = Gauge(
            "altinn_bridge_reconcile_active",
            "1 while this process holds the reconcile cursor (at most one replica should).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        # A gauge, not an Info: Info does not work in prometheus-client's multiprocess mode.
        Gauge(
            "altinn_bridge_build_info",
            "Version of the bridge (always 1).",
            ["version", "python"],
            registry=registry,
            multiprocess_mode="livemax",
        ).labels(__version__, platform.python_version()).set(1)
        # Pre-create the common series so dashboards and rate() see zeros, not gaps.
        for outcome in OUTCOMES:
            self.events.labels(outcome, "other")
        for result in ("ok", "error"):
            self.publish_seconds.labels(result)
        for previous in ("published", "in_flight", "failed"):
            self.redeliveries.labels(previous)
        for reason in ("expired", "full"):
            self.dedupe_evictions.labels(reason)
        for operation in ("write", "read"):
            self.dedupe_state_errors.labels(operation)
        for reason in ("missing_token", "wrong_token", "address"):
            self.auth_failures.labels(reason)
        for kind in RECONCILE_ERROR_KINDS:
            self.reconcile_errors.labels(kind)


def exposition(registry: CollectorRegistry, metrics_dir: str | None) -> bytes:
    """The text exposition: this process's ``registry``, or every worker's when several run.

    With ``PROMETHEUS_MULTIPROC_DIR`` set, prometheus-client keeps values in files
    there; a collector over that directory sums counters and histograms across
    workers and applies each gauge's multiprocess mode.
    """
    if metrics_dir:
        merged = CollectorRegistry()
        MultiProcessCollector(merged, metrics_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
        return generate_latest(merged)
    return generate_latest(registry)


def every_worker_ready(metrics_dir: str | None) -> bool:
    """With several workers: whether each one's ready gauge says 1 (True with one process)."""
    if not metrics_dir:
        return True
    merged = CollectorRegistry()
    MultiProcessCollector(merged, metrics_dir)  # type: ignore[no-untyped-call]  # untyped in prometheus-client
    values = [
        sample.value
        for family in merged.collect()
        if family.name == "altinn_bridge_ready"
        for sample in family.samples
    ]
    return bool(values) and min(values) >= 1
