"""Readiness: producer connected, dedupe window loaded, broker reachable, not draining.

The broker check is cached; a background task that failed also fails readiness.

Liveness (``/healthz``) never comes here: a Kafka outage must not make
Kubernetes restart the pod.
"""

from __future__ import annotations

import asyncio
import time

from bridge.config import HealthSettings
from bridge.errors import PublishError
from bridge.pipeline import Pipeline
from bridge.publisher import Publisher


class Readiness:
    """Evaluates readiness; broker checks run at most once per interval, one at a time."""

    def __init__(self, settings: HealthSettings, publisher: Publisher, pipeline: Pipeline) -> None:
        self._settings = settings
        self._publisher = publisher
        self._pipeline = pipeline
        self.producer_started = False
        self.draining = False
        self.failure: str | None = None
        self._checked_at = float("-inf")
        self._broker_problem: str | None = "not checked yet"
        self._lock = asyncio.Lock()

    async def problems(self) -> dict[str, str]:
        """Failing checks by name, each with a short reason; empty when ready."""
        problems: dict[str, str] = {}
        if self.draining:
            problems["draining"] = "shutting down"
        if self.failure is not None:
            problems["failed"] = self.failure
        if not self._pipeline.dedupe_ready:
            problems["dedupe"] = "dedupe window not loaded from Kafka yet"
        if not self.producer_started:
            problems["producer"] = "Kafka producer not started yet"
        else:
            broker = await self._broker()
            if broker is not None:
                problems["broker"] = broker
        return problems

    async def _broker(self) -> str | None:
        if self._fresh():
            return self._broker_problem
        async with self._lock:  # one check at a time; waiters reuse its result
            if not self._fresh():
                try:
                    await self._publisher.check(self._settings.ready_check_timeout_s)
                    self._broker_problem = None
                except PublishError as exc:
                    self._broker_problem = exc.detail
                self._checked_at = time.monotonic()
        return self._broker_problem

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < self._settings.ready_check_interval_s
