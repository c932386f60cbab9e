"""The per-application state handlers reach through ``request.app[BRIDGE]``."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from bridge.auth import Guard
from bridge.config import Settings
from bridge.dedupe_store import DedupeFollower
from bridge.health import Readiness
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import Publisher


@dataclass(eq=False, slots=True)
class Bridge:
    """Everything one running app owns. Created by :func:`bridge.app.create_app`."""

    settings: Settings
    publisher: Publisher
    metrics: Metrics
    pipeline: Pipeline
    readiness: Readiness
    guard: Guard
    follower: DedupeFollower | None = None
    in_flight: int = 0
    batches_in_flight: int = 0
    #: ``time.monotonic()`` by which shutdown must be complete; set on SIGTERM.
    shutdown_deadline: float | None = None
    #: Set when a background task the bridge cannot work without has stopped.
    failed: asyncio.Event = field(default_factory=asyncio.Event)
    failure: str | None = None

    def fail(self, reason: str) -> None:
        """A background task died: readiness fails and the server shuts down (exit 1)."""
        self.failure = reason
        self.readiness.failure = reason
        self.failed.set()


BRIDGE = web.AppKey("bridge", Bridge)
