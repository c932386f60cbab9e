"""HTTP handlers: thin adapters between aiohttp and the pipeline."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from importlib import resources
from typing import Any, Final

import orjson
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from bridge.auth import Denied
from bridge.errors import (
    BatchIncomplete,
    BatchRejected,
    BridgeError,
    Forbidden,
    InvalidBatch,
    PayloadTooLarge,
    RequestTimeout,
    Unauthorized,
    UnsupportedMediaType,
)
from bridge.http_contract import (
    BATCH_MEDIA_TYPE,
    BINARY_MARKER,
    JSON_MEDIA_TYPE,
    RETRY_AFTER_S,
    STRUCTURED_TYPES,
)
from bridge.metrics import every_worker_ready, exposition
from bridge.middleware import LOG_FIELDS
from bridge.state import BRIDGE, Bridge

#: Outcomes a batch may contain and still be answered 2xx.
BATCH_ACCEPTED = frozenset({"published", "duplicate", "validation", "filtered", "dead_lettered"})


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON answer rendered with orjson."""
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON_MEDIA_TYPE)


async def receive_event(request: web.Request) -> web.Response:
    """``POST /api/v1/events``: one CloudEvent (structured or binary mode) or a batch.

    2xx only once Kafka has every event (or knew it already).
    """
    bridge = request.app[BRIDGE]
    _authorize(request, bridge)
    admission = bridge.admission
    admission.enter_request()
    try:
        return await _receive(request, bridge)
    finally:
        admission.leave_request()


def _authorize(request: web.Request, bridge: Bridge) -> None:
    """Token and source address; the log line gets the token's fingerprint, never the token."""
    try:
        token = bridge.guard.check(
            path_token=request.match_info.get("token"),
            authorization=request.headers.get("Authorization"),
            peer=request.remote,
            forwarded=request.headers.get("Forwarded"),
            x_forwarded_for=request.headers.get("X-Forwarded-For"),
        )
    except Denied as exc:
        bridge.metrics.auth_failures.labels(exc.reason).inc()
        request[LOG_FIELDS]["denied"] = exc.reason
        if exc.reason == "address":
            raise Forbidden(exc.detail) from None
        raise Unauthorized(exc.detail) from None
    if token is not None:
        request[LOG_FIELDS]["token"] = token


async def _receive(request: web.Request, bridge: Bridge) -> web.Response:
    http = bridge.settings.http
    fields = request[LOG_FIELDS]
    is_batch = request.content_type == BATCH_MEDIA_TYPE
    # CloudEvents HTTP binding: an application/cloudevents* body is structured even
    # when ce-* headers come along; otherwise ce-specversion means binary mode.
    binary = (
        not is_batch
        and BINARY_MARKER in request.headers
        and not request.content_type.startswith("application/cloudevents")
    )
    try:
        bridge.admission.admit_request()
        if is_batch:
            return await _receive_batch(request, bridge, fields)
        if not binary and request.content_type not in STRUCTURED_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {request.content_type!r} is not accepted; send one CloudEvent as "
                f"application/json or application/cloudevents+json, in binary mode (ce-* headers), "
                f"or a batch as {BATCH_MEDIA_TYPE}"
            )
        body = await _read_body(request, http.max_body_bytes, "BRIDGE_MAX_BODY_BYTES", http.read_timeout_s)
    except BridgeError as exc:
        # Refused before any event was handled; a batch's own answer is counted per event.
        if not isinstance(exc, BatchIncomplete | BatchRejected):
            bridge.pipeline.count_refused(exc.outcome)
        raise
    content_type = request.headers.get("Content-Type", "")
    if binary:
        fields["mode"] = "binary"
        outcome = await bridge.pipeline.ingest_binary(
            request.headers.items(), body, content_type, time.time()
        )
    else:
        outcome = await bridge.pipeline.ingest(body, content_type, time.time())
    fields.update(outcome.as_json())
    if outcome.event_type is not None:
        fields["type"] = outcome.event_type
    return json_response(outcome.as_json())


async def _receive_batch(request: web.Request, bridge: Bridge, fields: dict[str, Any]) -> web.Response:
    http = bridge.settings.http
    bridge.admission.enter_batch()
    try:
        body = await _read_body(request, http.max_batch_bytes, "BRIDGE_MAX_BATCH_BYTES", http.read_timeout_s)
        return await _batch(bridge, body, fields)
    finally:
        bridge.admission.leave_batch()


async def _read_body(request: web.Request, limit: int, setting: str, timeout_s: float) -> bytes:
    """The body, refusing more than ``limit`` bytes (before reading when Content-Length says so)."""
    too_large = f"the body is larger than {limit} bytes ({setting})"
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"{too_large}: Content-Length is {length}")
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (an event is ~0.5 KiB): take it without a timer
        # and a read loop, which cost ~7 µs per request (docs/performance.md).
        buffered = content.read_nowait()
        if len(buffered) > limit:
            raise PayloadTooLarge(too_large)
        return buffered
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in request.content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(too_large)
    except TimeoutError:
        raise RequestTimeout(
            f"the body did not arrive within {timeout_s:g} s (BRIDGE_READ_TIMEOUT_S)"
        ) from None
    return bytes(body)


async def _batch(bridge: Bridge, body: bytes, fields: dict[str, Any]) -> web.Response:
    limit = bridge.settings.http.max_batch_events
    try:
        items = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidBatch(f"the batch is not valid JSON: {exc}") from None
    if not isinstance(items, list):
        raise InvalidBatch(f"a batch must be a JSON array of CloudEvents, got a JSON {type(items).__name__}")
    if len(items) > limit:
        raise PayloadTooLarge(f"the batch has {len(items)} events; at most {limit} (BRIDGE_MAX_BATCH_EVENTS)")
    results = await bridge.pipeline.ingest_batch(items, time.time())
    counts = Counter(str(r["outcome"]) for r in results)
    fields.update(batch=len(items), outcomes=dict(counts))
    if set(counts) <= BATCH_ACCEPTED:
        return json_response(
            {"outcome": "accepted", "count": len(items), "outcomes": dict(counts), "results": results}
        )
    if any(r.get("retryable") for r in results):
        raise BatchIncomplete(
            "some events of the batch did not reach Kafka; resend the whole batch (duplicates are dropped)",
            retry_after_s=RETRY_AFTER_S,
            count=len(items),
            outcomes=dict(counts),
            results=results,
        )
    raise BatchRejected(
        "some events of the batch were rejected; see results",
        count=len(items),
        outcomes=dict(counts),
        results=results,
    )


#: The OpenAPI 3.1 description of this API (``bridge/openapi.json``, package data), read once.
#: The same for every configuration; tests/unit/test_openapi.py ties it to the code.
OPENAPI_DOCUMENT: Final = resources.files("bridge").joinpath("openapi.json").read_bytes()


async def openapi_json(_: web.Request) -> web.Response:
    """The OpenAPI document, served as it is in the package."""
    return web.Response(body=OPENAPI_DOCUMENT, content_type=JSON_MEDIA_TYPE)


async def healthz(_: web.Request) -> web.Response:
    """Liveness: the process answers. Never touches Kafka."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """Readiness: 200 when producer started, broker reachable and not draining."""
    return readiness_response(await ready_problems(request.app[BRIDGE]))


async def ready_problems(bridge: Bridge) -> dict[str, str]:
    """Failing readiness checks (empty when ready); keeps the ready gauge current."""
    problems = await bridge.readiness.problems()
    bridge.metrics.ready.set(0 if problems else 1)
    if not problems and not every_worker_ready(bridge.settings.process.metrics_dir):
        # Kubernetes probes one worker; traffic reaches all of them.
        problems["workers"] = "another worker of this bridge is not ready yet"
    return problems


def readiness_response(problems: dict[str, str]) -> web.Response:
    """``/readyz``'s answer: 200 ready, or 503 naming every failing check."""
    if problems:
        return json_response({"status": "not ready", "failing": problems}, status=503)
    return json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    """Prometheus text exposition of the app's registry."""
    return metrics_response(request.app[BRIDGE])


def metrics_response(bridge: Bridge) -> web.Response:
    """``/metrics``' answer (prometheus-client's registry is safe to read from any thread)."""
    response = web.Response(body=exposition(bridge.metrics.registry, bridge.settings.process.metrics_dir))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response
