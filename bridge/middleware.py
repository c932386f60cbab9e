"""Two middlewares: one log line and metric per request, and errors → problem+json.

Handlers raise; they never build error bodies (RFC 9457).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from bridge.errors import BridgeError
from bridge.http_contract import PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from bridge.logs import get_logger
from bridge.metrics import Metrics, method_label

#: Per-request dict that handlers fill with fields for the request's log line.
LOG_FIELDS = web.RequestKey("log_fields", dict)

_log = get_logger("bridge.http")


def problem_response(
    status: int,
    title: str,
    detail: str,
    slug: str,
    *,
    retry_after_s: int | None = None,
    extra: dict[str, object] | None = None,
) -> web.Response:
    """An ``application/problem+json`` response (RFC 9457)."""
    body: dict[str, object] = {
        "type": PROBLEM_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if extra:
        body.update(extra)
    response = web.Response(status=status, body=orjson.dumps(body), content_type=PROBLEM_MEDIA_TYPE)
    if retry_after_s is not None:
        response.headers["Retry-After"] = str(retry_after_s)
    return response


def _slug(reason: str) -> str:
    return reason.lower().replace(" ", "-")


@web.middleware
async def problem_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Turn :class:`BridgeError`, aiohttp's HTTP errors and bugs into problem+json."""
    try:
        return await handler(request)
    except BridgeError as exc:
        request[LOG_FIELDS].update(
            {k: v for k, v in exc.extra.items() if k != "results"}, outcome=exc.outcome, detail=exc.detail
        )
        response = problem_response(
            exc.status, exc.title, exc.detail, exc.slug, retry_after_s=exc.retry_after_s, extra=exc.extra
        )
        for name, value in exc.headers:
            response.headers[name] = value
        if exc.close_connection:
            response.force_close()
        return response
    except web.HTTPException as exc:
        if exc.status < 400:  # noqa: PLR2004 - redirects and successes pass through
            raise
        response = problem_response(exc.status, exc.reason, exc.text or exc.reason, _slug(exc.reason))
        for name in ("Allow",):
            if name in exc.headers:
                response.headers[name] = exc.headers[name]
        return response
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - last resort: a bug must still get an answer, and a log line
        _log.exception("unhandled error", method=request.method)
        return problem_response(
            500, "Internal error", "unexpected error in the bridge; it has been logged", "internal-error"
        )


#: Under overload, shed requests are logged as one summary line per this many seconds.
SHED_LOG_INTERVAL_S = 10.0


class _ShedSummary:
    """Counts requests shed with 503 overloaded; one line per interval instead of one each.

    When the bridge sheds it is already out of CPU: a line per shed request would
    take more of it (tens of thousands of lines a second) and say nothing new.
    """

    def __init__(self) -> None:
        self.count = 0
        self.logged_at = float("-inf")

    def shed(self, now: float) -> None:
        self.count += 1
        if now - self.logged_at >= SHED_LOG_INTERVAL_S:
            _log.warning("requests shed: overloaded", count=self.count, interval_s=SHED_LOG_INTERVAL_S)
            self.count = 0
            self.logged_at = now


def access_middleware(metrics: Metrics) -> Middleware:
    """One log line and one request-duration observation per request (shed ones summarised)."""
    shed = _ShedSummary()

    @web.middleware
    async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
        fields: dict[str, Any] = {}
        request[LOG_FIELDS] = fields
        started = time.perf_counter()
        status = 499  # client went away before an answer (cancelled)
        try:
            response = await handler(request)
            status = response.status
            return response
        finally:
            elapsed = time.perf_counter() - started
            resource = request.match_info.route.resource
            route = resource.canonical if resource is not None else "unmatched"
            metrics.request_seconds.labels(route, method_label(request.method), str(status)).observe(elapsed)
            if fields.get("outcome") == "overloaded":
                shed.shed(time.monotonic())
            elif route not in ("/metrics", "/healthz", "/readyz") or status >= 500:  # noqa: PLR2004
                _log.info(
                    "request",
                    method=request.method,
                    route=route,
                    status=status,
                    duration_ms=round(elapsed * 1000, 3),
                    **fields,
                )

    return access
