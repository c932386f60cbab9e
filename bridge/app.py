"""The app factory and the lifecycle of what the app owns."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

from aiohttp import web
from prometheus_client import CollectorRegistry

from bridge import views
from bridge.config import Settings
from bridge.health import Readiness
from bridge.logs import get_logger
from bridge.metrics import Metrics
from bridge.middleware import access_middleware, problem_middleware
from bridge.pipeline import Pipeline
from bridge.publisher import KafkaPublisher, Publisher
from bridge.state import BRIDGE, Bridge

EVENTS_PATH = "/api/v1/events"

#: Back-off between attempts to connect the producer at start-up, in seconds.
CONNECT_BACKOFF_S = (0.5, 1.0, 2.0, 5.0)
#: Bound on flushing and closing the producer when the app stops, in seconds.
PRODUCER_STOP_TIMEOUT_S = 10.0

_log = get_logger("bridge.app")


def create_app(
    settings: Settings,
    *,
    publisher: Publisher | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """Build the aiohttp application. Nothing connects until the app starts."""
    publisher = publisher if publisher is not None else KafkaPublisher(settings.kafka)
    metrics = Metrics(registry if registry is not None else CollectorRegistry())
    bridge = Bridge(
        settings=settings,
        publisher=publisher,
        metrics=metrics,
        pipeline=Pipeline(settings, publisher, metrics),
        readiness=Readiness(settings.health, publisher),
    )
    app = web.Application(
        client_max_size=settings.http.max_body_bytes,
        middlewares=[access_middleware(metrics), problem_middleware],
    )
    app[BRIDGE] = bridge
    app.router.add_post(EVENTS_PATH, views.receive_event)
    app.router.add_get("/healthz", views.healthz)
    app.router.add_get("/readyz", views.readyz)
    app.router.add_get("/metrics", views.metrics)
    app.cleanup_ctx.append(_producer_ctx)
    return app


async def _producer_ctx(app: web.Application) -> AsyncIterator[None]:
    """Connect the producer in the background, then flush and stop it at the end.

    In the background so the server (and /healthz) answers while Kafka is down.
    """
    bridge = app[BRIDGE]
    connecting = asyncio.create_task(_connect(bridge), name="kafka-connect")
    yield
    if not connecting.done():
        connecting.cancel()
        await asyncio.gather(connecting, return_exceptions=True)
        return
    timeout_s = PRODUCER_STOP_TIMEOUT_S
    if bridge.shutdown_deadline is not None:
        timeout_s = max(0.5, min(timeout_s, bridge.shutdown_deadline - time.monotonic()))
    try:
        async with asyncio.timeout(timeout_s):
            await bridge.publisher.stop()
        _log.info("producer stopped")
    except TimeoutError:
        _log.error("producer stop timed out; unsent records may be lost", timeout_s=timeout_s)


async def _connect(bridge: Bridge) -> None:
    attempt = 0
    while True:
        try:
            await bridge.publisher.start()
        except Exception as exc:  # noqa: BLE001 - any failure to connect is retried
            delay = CONNECT_BACKOFF_S[min(attempt, len(CONNECT_BACKOFF_S) - 1)]
            _log.warning("kafka connect failed; retrying", error=str(exc), retry_in_s=delay)
            attempt += 1
            await asyncio.sleep(delay)
        else:
            bridge.readiness.producer_started = True
            _log.info("producer started", bootstrap_servers=list(bridge.settings.kafka.bootstrap_servers))
            return
