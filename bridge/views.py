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
from bridge.middleware import answer_for
from bridge.pipeline import Outcome
from bridge.state import BRIDGE, Bridge

#: Outcomes a batch may contain and still be answered 2xx.
BATCH_ACCEPTED = frozenset({"published", "duplicate", "validation", "filtered", "dead_lettered"})


def json_response(body: object, status: int = 200) -> web.Response:
    """A JSON answer rendered with orjson."""
    return web.Response(status=status, body=orjson.dumps(body), content_type=JSON_MEDIA_TYPE)


async def receive_event(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/events``: one CloudEvent (structured or binary mode) or a batch.

    2xx only once Kafka has every event (or knew it already). One pass, no middleware:
    this function authorises, admits, reads, ingests, answers, and writes the request's
    one log line and metrics, errors mapped to problem+json here as well.
    """
    started = time.perf_counter()
    bridge = request.app[BRIDGE]
    fields: dict[str, Any] = {}
    admission = bridge.admission
    admitted = False
    response: web.StreamResponse
    try:
        token = _authorize(request, bridge, fields)
        if token is not None:
            fields["token"] = token
        admission.enter_request()
        admitted = True
        response = await _receive(request, bridge, fields)
    except asyncio.CancelledError:
        bridge.http_log.answered(request, 499, started, fields)
        raise
    except Exception as exc:  # noqa: BLE001 - every failure gets an answer (a bug: 500, logged)
        response = answer_for(exc, request, fields)
    finally:
        if admitted:
            admission.leave_request()
    bridge.http_log.answered(request, response.status, started, fields)
    return response


def _authorize(request: web.Request, bridge: Bridge, fields: dict[str, Any]) -> str | None:
    """Token and source address; the log line gets the token's fingerprint, never the token."""
    headers = request.headers
    guard = bridge.guard
    path_token = request.match_info.get("token")
    by_address = guard.checks_address  # without an allowlist the peer and proxy headers do not matter
    try:
        return guard.check(
            path_token=path_token,
            authorization=headers.get("Authorization"),
            peer=request.remote if by_address else None,
            forwarded=headers.get("Forwarded") if by_address else None,
            x_forwarded_for=headers.get("X-Forwarded-For") if by_address else None,
        )
    except Denied as exc:
        bridge.metrics.auth_failures.labels(exc.reason).inc()
        fields["denied"] = exc.reason
        if exc.reason == "address":
            raise Forbidden(exc.detail) from None
        raise Unauthorized(exc.detail) from None


async def _receive(request: web.Request, bridge: Bridge, fields: dict[str, Any]) -> web.Response:
    http = bridge.settings.http
    content_type = request.content_type
    is_batch = content_type == BATCH_MEDIA_TYPE
    headers = request.headers
    # CloudEvents HTTP binding: an application/cloudevents* body is structured even
    # when ce-* headers come along; otherwise ce-specversion means binary mode.
    binary = (
        not is_batch and BINARY_MARKER in headers and not content_type.startswith("application/cloudevents")
    )
    pipeline = bridge.pipeline
    try:
        bridge.admission.admit_request()
        if is_batch:
            return await _receive_batch(request, bridge, fields)
        if not binary and content_type not in STRUCTURED_TYPES:
            raise UnsupportedMediaType(
                f"Content-Type {content_type!r} is not accepted; send one CloudEvent as "
                f"application/json or application/cloudevents+json, in binary mode (ce-* headers), "
                f"or a batch as {BATCH_MEDIA_TYPE}"
            )
        body = await _read_body(request, http.max_body_bytes, "BRIDGE_MAX_BODY_BYTES", http.read_timeout_s)
    except BridgeError as exc:
        # Refused before any event was handled; a batch's own answer is counted per event.
        if not isinstance(exc, BatchIncomplete | BatchRejected):
            pipeline.count_refused(exc.outcome)
        raise
    raw_type = headers.get("Content-Type", "")
    if binary:
        fields["mode"] = "binary"
        taken = pipeline.take_binary(headers.items(), body, raw_type, time.time())
    else:
        taken = pipeline.take(body, raw_type, time.time())
    outcome = taken if type(taken) is Outcome else await pipeline.settle(taken)  # type: ignore[arg-type]
    answer = outcome.as_json()
    fields.update(answer)
    if outcome.event_type is not None:
        fields["type"] = outcome.event_type
    return web.Response(body=orjson.dumps(answer), content_type=JSON_MEDIA_TYPE)


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
    length = request.content_length
    if length is not None and length > limit:
        raise PayloadTooLarge(
            f"the body is larger than {limit} bytes ({setting}): Content-Length is {length}"
        )
    content = request.content
    if content.is_eof():
        # The whole body came with the headers (an event is ~0.5 KiB): take it without a timer
        # and a read loop, which cost ~7 µs per request (docs/performance.md).
        buffered = content.read_nowait()
        if len(buffered) > limit:
            raise PayloadTooLarge(f"the body is larger than {limit} bytes ({setting})")
        return buffered
    body = bytearray()
    try:
        async with asyncio.timeout(timeout_s):
            async for chunk in content.iter_any():
                body += chunk
                if len(body) > limit:
                    raise PayloadTooLarge(f"the body is larger than {limit} bytes ({setting})")
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
