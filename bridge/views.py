"""HTTP handlers: thin adapters between aiohttp and the pipeline."""

from __future__ import annotations

import time

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from bridge.errors import ShuttingDown, UnsupportedMediaType
from bridge.middleware import LOG_FIELDS
from bridge.state import BRIDGE

#: Media types of one structured-mode CloudEvent. Altinn sends the first.
STRUCTURED_TYPES = frozenset({"application/json", "application/cloudevents+json"})


def _json(body: object, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


async def receive_event(request: web.Request) -> web.Response:
    """``POST /api/v1/events``: one CloudEvent; 2xx only once Kafka has it."""
    bridge = request.app[BRIDGE]
    fields = request[LOG_FIELDS]
    bridge.metrics.in_flight.inc()
    bridge.in_flight += 1
    try:
        if bridge.readiness.draining:
            bridge.metrics.events.labels("unavailable", "other").inc()
            raise ShuttingDown("the bridge is shutting down; retry shortly", retry_after_s=1)
        if request.content_type not in STRUCTURED_TYPES:
            bridge.metrics.events.labels("rejected", "other").inc()
            raise UnsupportedMediaType(
                f"Content-Type {request.content_type!r} is not accepted; send one CloudEvent as "
                "application/json or application/cloudevents+json"
            )
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            bridge.metrics.events.labels("rejected", "other").inc()
            raise
        outcome = await bridge.pipeline.ingest(body, request.headers.get("Content-Type", ""), time.time())
        fields.update(outcome.as_json())
        if outcome.event_type is not None:
            fields["type"] = outcome.event_type
        return _json(outcome.as_json())
    finally:
        bridge.in_flight -= 1
        bridge.metrics.in_flight.dec()


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process answers. Never touches Kafka."""
    return _json({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when producer started, broker reachable and not draining."""
    bridge = request.app[BRIDGE]
    problems = await bridge.readiness.problems()
    bridge.metrics.ready.set(0 if problems else 1)
    if problems:
        return _json({"status": "not ready", "failing": problems}, status=503)
    return _json({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the app's registry."""
    registry = request.app[BRIDGE].metrics.registry
    response = web.Response(body=generate_latest(registry))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
