"""The bridge's lifecycle phase and its admission gate: one owner each, read everywhere.

:class:`Lifecycle` is the only place the phase changes (starting → ready →
draining, or failed); the app's start-up tasks, the server's signal handling and
background tasks call its methods, and readiness, the handlers and the pipeline
read it. :class:`Admission` is the only place the in-flight limits are counted
and enforced: requests and publishes (``BRIDGE_MAX_IN_FLIGHT``) and batches.
Pure: asyncio and the bridge's own errors only.
"""

from __future__ import annotations

import asyncio
import enum
from typing import Protocol

from bridge.errors import Overloaded, ShuttingDown
from bridge.http_contract import RETRY_AFTER_OVERLOADED_S

#: Batches read at once; with BRIDGE_MAX_BATCH_BYTES this bounds their memory (4 x 4 MiB by default).
MAX_BATCHES_IN_FLIGHT = 4


class Phase(enum.StrEnum):
    """Where the bridge is in its life."""

    STARTING = "starting"
    READY = "ready"
    DRAINING = "draining"
    FAILED = "failed"


class Lifecycle:
    """The phase, and the start-up steps that lead to ``ready``.

    ``ready`` here means the bridge can publish: the producer started and, with
    the shared dedupe window, the window loaded. Whether the broker answers
    right now is for readiness checks to ask (:mod:`bridge.health`).
    """

    def __init__(self, *, needs_dedupe_window: bool) -> None:
        # Plain attributes, read on every event; only the methods below change them.
        #: The Kafka producer is connected (it stays so until the app stops).
        self.producer_started = False
        #: The dedupe window can be trusted: loaded from the state topic (or not needed).
        self.dedupe_ready = not needs_dedupe_window
        #: Shutting down: new requests are refused.
        self.draining = False
        self.failure: str | None = None
        #: Set once the bridge has failed; the server waits on it and exits 1.
        self.failed = asyncio.Event()
        #: ``time.monotonic()`` by which shutdown must be complete; set when draining starts.
        self.deadline: float | None = None

    @property
    def phase(self) -> Phase:
        """The current phase (failed and draining win over the start-up steps)."""
        if self.failure is not None:
            return Phase.FAILED
        if self.draining:
            return Phase.DRAINING
        if self.producer_started and self.dedupe_ready:
            return Phase.READY
        return Phase.STARTING

    def producer_up(self) -> None:
        """The producer connected."""
        self.producer_started = True

    def window_loaded(self) -> None:
        """The dedupe window was loaded from the state topic."""
        self.dedupe_ready = True

    def drain(self, deadline: float) -> None:
        """A signal arrived: refuse new requests, finish what is in flight by ``deadline``."""
        self.draining = True
        self.deadline = deadline

    def fail(self, reason: str, *, window_lost: bool = False) -> None:
        """A background task the bridge cannot work without stopped: not ready, and the process exits 1.

        ``window_lost``: the dedupe window is no longer followed, so deduping must stop at once.
        """
        if window_lost:
            self.dedupe_ready = False
        self.failure = reason
        self.failed.set()

    def problems(self) -> dict[str, str]:
        """What keeps the bridge from being ready, by check name (broker reachability aside)."""
        problems: dict[str, str] = {}
        if self.draining:
            problems["draining"] = "shutting down"
        if self.failure is not None:
            problems["failed"] = self.failure
        if not self.dedupe_ready:
            problems["dedupe"] = "dedupe window not loaded from Kafka yet"
        if not self.producer_started:
            problems["producer"] = "Kafka producer not started yet"
        return problems


class Gauge(Protocol):
    """What :class:`Admission` moves of a metric (prometheus-client's ``Gauge`` fits)."""

    def inc(self, amount: float = 1) -> None:
        """Up by ``amount``."""

    def dec(self, amount: float = 1) -> None:
        """Down by ``amount``."""


class Admission:
    """The one gate for work in flight: requests, publishes and batches, each counted here.

    Beyond a limit the answer is an immediate 503 (``Overloaded``) instead of a
    queue, so memory stays bounded; while draining every new request gets 503
    ``ShuttingDown``.
    """

    def __init__(self, lifecycle: Lifecycle, max_in_flight: int, requests_gauge: Gauge | None = None) -> None:
        self._lifecycle = lifecycle
        self._max = max_in_flight
        self._gauge = requests_gauge
        self.requests = 0
        self.publishes = 0
        self.batches = 0

    # Plain enter/leave pairs, not context managers: they run twice per event on the hot path,
    # where a generator-based context manager costs more than the counting itself.

    def enter_request(self) -> None:
        """Count one request in flight (refused ones included); pair with :meth:`leave_request`."""
        self.requests += 1
        if self._gauge is not None:
            self._gauge.inc()

    def leave_request(self) -> None:
        """The request was answered."""
        self.requests -= 1
        if self._gauge is not None:
            self._gauge.dec()

    def admit_request(self) -> None:
        """Raise unless a new request may be handled now (call after :meth:`enter_request`)."""
        if self._lifecycle.draining:
            raise ShuttingDown(
                "the bridge is shutting down; retry shortly", retry_after_s=RETRY_AFTER_OVERLOADED_S
            )
        if self.requests > self._max:
            raise Overloaded(
                f"more than {self._max} requests in flight (BRIDGE_MAX_IN_FLIGHT); retry shortly",
                retry_after_s=RETRY_AFTER_OVERLOADED_S,
            )

    def enter_batch(self) -> None:
        """Admit and count one batch, at most :data:`MAX_BATCHES_IN_FLIGHT` at once; then leave_batch()."""
        if self.batches >= MAX_BATCHES_IN_FLIGHT:
            raise Overloaded(
                f"{MAX_BATCHES_IN_FLIGHT} batches are being handled already; retry shortly",
                retry_after_s=RETRY_AFTER_OVERLOADED_S,
            )
        self.batches += 1

    def leave_batch(self) -> None:
        """The batch was answered."""
        self.batches -= 1

    def enter_publish(self, event_id: str | None) -> None:
        """Admit and count one publish waiting for Kafka (pushes, batch elements, reconciling alike).

        Pair with :meth:`leave_publish` once Kafka answered.
        """
        if self.publishes >= self._max:
            raise Overloaded(
                f"{self.publishes} publishes are waiting for Kafka (BRIDGE_MAX_IN_FLIGHT); retry shortly",
                retry_after_s=RETRY_AFTER_OVERLOADED_S,
                event_id=event_id,
            )
        self.publishes += 1

    def leave_publish(self) -> None:
        """Kafka answered (or the wait ended)."""
        self.publishes -= 1
