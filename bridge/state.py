"""The per-application state handlers reach through ``request.app[BRIDGE]``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bridge.config import Settings
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
    in_flight: int = 0
    #: ``time.monotonic()`` by which shutdown must be complete; set on SIGTERM.
    shutdown_deadline: float | None = None


BRIDGE = web.AppKey("bridge", Bridge)
