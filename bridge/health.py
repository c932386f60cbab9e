"""Readiness: the lifecycle's start-up steps done, not draining or failed, and the broker reachable.

The broker check is cached. Liveness (``/healthz``) never comes here: a Kafka
outage must not make Kubernetes restart the pod.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from bridge.errors import PublishError
from bridge.lifecycle import Lifecycle
from bridge.server_settings import HealthSettings


class BrokerCheck(Protocol):
    """What readiness needs of the publisher: one bounded reachability check."""

    async def check(self, timeout_s: float) -> None:
        """Return when the broker answers; raise :class:`PublishError` otherwise."""


class Readiness:
    """Evaluates readiness; broker checks run at most once per interval, one at a time."""

    def __init__(self, settings: HealthSettings, lifecycle: Lifecycle, broker: BrokerCheck) -> None:
        self._settings = settings
        self._lifecycle = lifecycle
        self._broker_check = broker
        self._checked_at = float("-inf")
        self._broker_problem: str | None = "not checked yet"
        self._lock = asyncio.Lock()

    async def problems(self) -> dict[str, str]:
        """Failing checks by name, each with a short reason; empty when ready."""
        problems = self._lifecycle.problems()
        if self._lifecycle.producer_started:
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
                    await self._broker_check.check(self._settings.ready_check_timeout_s)
                    self._broker_problem = None
                except PublishError as exc:
                    self._broker_problem = exc.detail
                self._checked_at = time.monotonic()
        return self._broker_problem

    def _fresh(self) -> bool:
        return time.monotonic() - self._checked_at < self._settings.ready_check_interval_s
