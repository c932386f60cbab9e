"""The per-application state handlers reach through ``request.app[BRIDGE]``."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bridge.auth import Guard
from bridge.config import Settings
from bridge.dedupe_store import DedupeFollower
from bridge.health import Readiness
from bridge.http_log import HttpLog
from bridge.lifecycle import Admission, Lifecycle
from bridge.metrics import Metrics
from bridge.pipeline import Pipeline
from bridge.publisher import Publisher


@dataclass(eq=False, slots=True)
class Bridge:
    """Everything one running app owns. Created by :func:`bridge.app.create_app`."""

    settings: Settings
    publisher: Publisher
    metrics: Metrics
    lifecycle: Lifecycle
    admission: Admission
    pipeline: Pipeline
    readiness: Readiness
    guard: Guard
    http_log: HttpLog
    follower: DedupeFollower | None = None


BRIDGE = web.AppKey("bridge", Bridge)
