"""Repair what pushes lost: read Altinn's pull API and publish what no push delivered.

Altinn drops an event for good after ~35 h of failed pushes; only the pull API
(``GET /events/api/v1/events?resource=…&after=…&size=…``) can recover it. The
reconciler reads it page by page from a cursor and hands every event to the same
:class:`bridge.pipeline.Pipeline` as a push: validation, filters, routing, dedupe
and publish. An event a push delivered is a ``duplicate`` there; one that comes
out ``published`` was *repaired*.

- **Cursor.** Advanced (in :mod:`bridge.cursor_store`) only past events handled
  for good: published, duplicate, filtered, dead-lettered, validation, or refused
  for good (``reject`` policy). An event that may succeed later (Kafka
  unavailable, overloaded) stops the page there; the next attempt starts after
  the last event handled, so nothing is skipped and re-reading costs only
  duplicates.
- **Pages.** The next page is asked for with ``after`` = the cursor (the same
  URL Altinn's ``next`` header names), until a page comes back empty — Altinn
  sends no ``next`` then. Events become pullable 30 s after Altinn registered
  them, so an empty page means "nothing older than 30 s left".
- **Too old.** Events whose ``time`` is older than the dedupe window are
  skipped (counted, never published): the window no longer knows whether a push
  delivered them, and publishing them would duplicate every pushed one, e.g.
  90 days of them on a first start from Altinn's oldest event. ``altinn-bridge
  reconcile --max-age-s 0`` back-fills them on purpose.
- **Unknown cursor.** Altinn silently restarts from its oldest event when it
  does not know ``after`` (deleted after 90 days, another environment). The
  first page after a stored cursor is checked: if it holds the cursor's own
  event, or starts with an event over an hour older than it, the restart is
  logged and counted (``cursor_unknown``), and reading goes on (dedupe and the
  age limit keep the re-read harmless).
- **Errors.** 429/5xx are retried by the client with backoff (each retry
  counted); a pull that still fails, a token that cannot be had, a page Kafka
  did not take or a cursor that cannot be stored is counted by kind and tried
  again after a backoff. Nothing of that stops the server.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import aiohttp
from aiokafka.errors import KafkaError

from bridge.altinn.errors import ApiError, TokenError
from bridge.altinn.events_api import EventsApi, Retrying
from bridge.cursor_store import Cursor, CursorStore, CursorTopicMissing
from bridge.errors import PublishError
from bridge.events import parse_time
from bridge.logs import get_logger
from bridge.metrics import Metrics

#: Outcomes after which an event is done with for good: the cursor may pass it.
FINAL_OUTCOMES: Final = frozenset({"published", "duplicate", "filtered", "dead_lettered", "validation"})
#: The outcome of an event skipped for being older than the age limit.
TOO_OLD: Final = "too_old"
#: A first page starting this much before the cursor's event means Altinn restarted from its oldest.
RESTART_TOLERANCE_S: Final = 3600.0
#: Events handed to the pipeline at once (published concurrently; pushes share BRIDGE_MAX_IN_FLIGHT).
CHUNK_SIZE: Final = 100
#: Waits after consecutive failures, in seconds (the last repeats).
BACKOFF_S: Final = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
#: Longest sleep between refreshes of the lag and cursor-age gauges, in seconds.
GAUGE_REFRESH_S: Final = 5.0

_log = get_logger("bridge.reconciler")


class Ingest(Protocol):
    """What the reconciler needs of :class:`bridge.pipeline.Pipeline`."""

    async def ingest_batch(self, items: list[object], received_at: float) -> list[dict[str, object]]:
        """One result per item, in order."""
        ...


class PageNotAccepted(Exception):
    """Some event of a page may succeed later (Kafka unavailable, overloaded); retried from the cursor."""


# --- pure rules ----------------------------------------------------------------


def event_time(event: Mapping[str, Any]) -> float | None:
    """An event's ``time`` in Unix seconds; ``None`` when absent or not RFC 3339."""
    value = event.get("time")
    if not isinstance(value, str):
        return None
    try:
        return parse_time(value).timestamp()
    except ValueError:
        return None


def is_final(result: Mapping[str, object]) -> bool:
    """Whether an event's pipeline result lets the cursor pass it (nothing a retry could change)."""
    return (
        result.get("outcome") in FINAL_OUTCOMES
        or result.get("outcome") == TOO_OLD
        or (result.get("retryable") is False)
    )


def final_prefix(results: Sequence[Mapping[str, object]]) -> int:
    """How many leading results are final: the cursor may move past that many events."""
    for index, result in enumerate(results):
        if not is_final(result):
            return index
    return len(results)


def restart_suspected(cursor: Cursor, events: Sequence[Mapping[str, Any]]) -> str | None:
    """Why the first page after ``cursor`` looks like Altinn restarted from its oldest event, if it does.

    Certain when the page holds the cursor's own event (a known cursor gives only
    later ones); likely when it starts over :data:`RESTART_TOLERANCE_S` before the
    cursor's event (Altinn orders by its own sequence, not by ``time``, hence the
    tolerance).
    """
    if not events or cursor.after == "0":
        return None
    if any(str(event.get("id")) == cursor.after for event in events):
        return "the page repeats the cursor's own event"
    first = event_time(events[0])
    if (
        cursor.after_time is not None
        and first is not None
        and first < cursor.after_time - RESTART_TOLERANCE_S
    ):
        hours = (cursor.after_time - first) / 3600
        return f"the page starts {hours:.1f} h before the cursor's event"
    return None


@dataclass(slots=True)
class Totals:
    """What a reconciler did, for the one-shot command's progress and summary."""

    pages: int = 0
    fetched: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    cursor_unknown: int = 0
    started: float = field(default_factory=time.monotonic)

    def as_json(self) -> dict[str, object]:
        """The summary the one-shot command prints."""
        took = time.monotonic() - self.started
        return {
            "pages": self.pages,
            "fetched": self.fetched,
            "published": self.outcomes["published"],
            "duplicates": self.outcomes["duplicate"],
            "filtered": self.outcomes["filtered"],
            "dead_lettered": self.outcomes["dead_lettered"],
            "skipped_too_old": self.outcomes[TOO_OLD],
            "rejected": self.outcomes["rejected"],
            "cursor_unknown": self.cursor_unknown,
            "seconds": round(took, 3),
            "rate_per_s": round(self.fetched / took, 1) if took > 0 else 0.0,
        }


def error_kind(exc: BaseException) -> str | None:
    """The ``kind`` label of an error the reconciler retries; ``None`` for one it must not swallow."""
    if isinstance(exc, TokenError):
        return "token"
    if isinstance(exc, ApiError | aiohttp.ClientError):
        return "altinn"
    if isinstance(exc, PageNotAccepted):
        return "kafka"
    if isinstance(exc, PublishError | KafkaError | CursorTopicMissing | ValueError):
        return "cursor_store"  # ValueError: an unreadable cursor record
    return None


def count_retry(metrics: Metrics) -> Callable[[Retrying], None]:
    """An ``on_retry`` for :class:`EventsApi` that counts each retry of a 429 or a 5xx/lost connection."""

    def on_retry(retrying: Retrying) -> None:
        kind = "rate_limited" if retrying.reason == "HTTP 429" else "altinn_unavailable"
        metrics.reconcile_errors.labels(kind).inc()
        _log.info(
            "altinn pull retried",
            reason=retrying.reason,
            attempt=retrying.attempt,
            retry_in_s=retrying.delay_s,
        )

    return on_retry


# --- the reconciler ------------------------------------------------------------


class Reconciler:
    """Reads one resource's events from a cursor; see the module docstring.

    ``max_age_s``: events older than this (by ``time``) are skipped; ``None``
    publishes whatever age. ``clock`` and ``sleep`` are injectable for tests.
    """

    def __init__(
        self,
        *,
        pipeline: Ingest,
        api: EventsApi,
        store: CursorStore,
        metrics: Metrics,
        resource: str,
        page_size: int,
        max_age_s: float | None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_page: Callable[[Totals], None] | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._api = api
        self._store = store
        self._metrics = metrics
        self.resource = resource
        self._page_size = page_size
        self._max_age_s = max_age_s
        self._clock = clock
        self._sleep = sleep
        self._on_page = on_page
        self.cursor = Cursor("0")
        self._check_restart = False
        self._confirmed_at: float | None = None
        self.totals = Totals()

    async def begin(self, after: str | None = None) -> Cursor:
        """Start after event ``after`` (``"0"``: Altinn's oldest), or from the stored cursor when ``None``."""
        if after is not None:
            self.cursor = Cursor(after)
            self._check_restart = False
        else:
            stored = await self._store.load(self.resource)
            self.cursor = stored if stored is not None else Cursor("0")
            self._check_restart = stored is not None
            if stored is not None:
                self._confirmed_at = stored.updated_at
        _log.info("reconciling", resource=self.resource, after=self.cursor.after, stored=after is None)
        self.refresh_gauges()
        return self.cursor

    async def poll(self) -> int:
        """Fetch and handle the page after the cursor; how many events it had (0: caught up).

        Raises :class:`PageNotAccepted` when an event may succeed later (the
        cursor then stands after the last event handled), and what the Altinn
        client or the cursor store raise.
        """
        page = await self._api.pull(self.resource, self.cursor.after, self._page_size)
        now = self._clock()
        events = page.events
        if not events:
            self._confirmed_at = now
            self.refresh_gauges()
            return 0
        self.totals.pages += 1
        self.totals.fetched += len(events)
        self._metrics.reconcile_fetched.inc(len(events))
        if self._check_restart:
            self._check_restart = False
            self._warn_if_restarted(events)
        try:
            for start in range(0, len(events), CHUNK_SIZE):
                await self._handle(events[start : start + CHUNK_SIZE], now)
        finally:
            self.refresh_gauges()
            if self._on_page is not None:
                self._on_page(self.totals)
        return len(events)

    async def catch_up(self) -> None:
        """Poll until a page comes back empty."""
        while await self.poll():
            pass

    async def run_forever(self, interval_s: float) -> None:
        """Begin from the stored cursor, then catch up every ``interval_s``; back off on errors."""
        failures = 0
        begun = False
        while True:
            try:
                if not begun:
                    await self.begin()
                    begun = True
                await self.catch_up()
            except Exception as exc:
                kind = error_kind(exc)
                if kind is None:
                    raise
                self._metrics.reconcile_errors.labels(kind).inc()
                wait = BACKOFF_S[min(failures, len(BACKOFF_S) - 1)]
                failures += 1
                _log.warning("reconcile failed; retrying", kind=kind, error=str(exc), retry_in_s=wait)
            else:
                failures = 0
                wait = interval_s
            await self._wait(wait)

    async def _wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            await self._sleep(min(left, GAUGE_REFRESH_S))
            self.refresh_gauges()

    def refresh_gauges(self) -> None:
        """Set the lag and cursor-age gauges for now."""
        now = self._clock()
        newest = self.cursor.newest_event_time
        self._metrics.reconcile_lag.set(max(now - newest, 0.0) if newest is not None else 0.0)
        confirmed = max(self.cursor.updated_at, self._confirmed_at or 0.0)
        self._metrics.reconcile_cursor_age.set(max(now - confirmed, 0.0) if confirmed else 0.0)

    def _warn_if_restarted(self, events: Sequence[Mapping[str, Any]]) -> None:
        reason = restart_suspected(self.cursor, events)
        if reason is None:
            return
        self.totals.cursor_unknown += 1
        self._metrics.reconcile_errors.labels("cursor_unknown").inc()
        _log.warning(
            "altinn does not know the stored cursor and restarted from its oldest event; "
            "re-reading (duplicates are suppressed, events older than the age limit skipped)",
            resource=self.resource,
            after=self.cursor.after,
            reason=reason,
            first_event_id=str(events[0].get("id")),
        )

    async def _handle(self, events: Sequence[dict[str, Any]], now: float) -> None:
        """Ingest one chunk, then store the cursor after the last event handled for good."""
        horizon = None if self._max_age_s is None else now - self._max_age_s
        times = [event_time(event) for event in events]
        fresh = [
            event
            for event, at in zip(events, times, strict=True)
            if horizon is None or at is None or at >= horizon
        ]
        ingested = iter(await self._pipeline.ingest_batch(list(fresh), now) if fresh else [])
        results: list[Mapping[str, object]] = [
            next(ingested) if horizon is None or at is None or at >= horizon else {"outcome": TOO_OLD}
            for at in times
        ]
        for result in results:
            outcome = str(result.get("outcome"))
            self.totals.outcomes[outcome] += 1
            if outcome == "published":
                self._metrics.reconcile_repaired.inc()
            elif outcome == TOO_OLD:
                self._metrics.reconcile_skipped.inc()
            elif outcome == "rejected":
                self._metrics.reconcile_errors.labels("rejected").inc()
        done = final_prefix(results)
        if done:
            await self._advance(events[:done], times[:done], now)
        if done < len(results):
            failed = results[done]
            raise PageNotAccepted(
                f"event {events[done].get('id')!r} was not handled ({failed.get('outcome')}: "
                f"{failed.get('detail')}); retrying from the cursor"
            )

    async def _advance(
        self, events: Sequence[dict[str, Any]], times: Sequence[float | None], now: float
    ) -> None:
        seen = [t for t in times if t is not None]
        newest = self.cursor.newest_event_time
        if seen:
            newest = max(seen) if newest is None else max(newest, *seen)
        # The last event with a usable id (one without can only have been dead-lettered).
        last = next(
            (
                i
                for i in range(len(events) - 1, -1, -1)
                if isinstance(events[i].get("id"), str) and events[i]["id"]
            ),
            None,
        )
        after, after_time = (
            (self.cursor.after, self.cursor.after_time)
            if last is None
            else (str(events[last]["id"]), times[last])
        )
        cursor = Cursor(after=after, after_time=after_time, newest_event_time=newest, updated_at=now)
        await self._store.save(self.resource, cursor)
        self.cursor = cursor
