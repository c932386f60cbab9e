"""Each HTTP request's one log line and duration metric, with everything looked up once.

The event route calls :meth:`HttpLog.answered` itself (no middleware chain on the
hot path); the other routes through :func:`bridge.middleware.logged`.
"""

from __future__ import annotations

import time
from typing import Any, Final

from aiohttp import web

from bridge.logs import request_logger
from bridge.metrics import Metrics, method_label
from bridge.personal_data import mask_national_ids

#: Under overload, shed requests are logged as one summary line per this many seconds.
SHED_LOG_INTERVAL_S = 10.0
#: Routes whose successful requests are not logged (probes and scrapes, every few seconds).
QUIET_ROUTES: Final = frozenset({"/metrics", "/healthz", "/readyz"})
#: The catch-all route (bridge.middleware.fallback): its requests are logged as route ``unmatched``.
FALLBACK_PATH: Final = "/{unmatched:.*}"
_FALLBACK_ROUTE: Final = "/{unmatched}"
#: Log fields whose values come from the sender and may hold a national identity number.
_SENT_FIELDS: Final = ("event_id", "type", "detail")


class _ShedSummary:
    """Counts requests shed with 503 overloaded; one line per interval instead of one each.

    When the bridge sheds it is already out of CPU: a line per shed request would
    take more of it (tens of thousands of lines a second) and say nothing new.
    """

    def __init__(self, log: Any) -> None:
        self._log = log
        self.count = 0
        self.logged_at = float("-inf")

    def shed(self, now: float) -> None:
        self.count += 1
        if now - self.logged_at >= SHED_LOG_INTERVAL_S:
            self._log.warning("requests shed: overloaded", count=self.count, interval_s=SHED_LOG_INTERVAL_S)
            self.count = 0
            self.logged_at = now


class HttpLog:
    """The request-duration histogram's children (bounded labels) and the request logger."""

    def __init__(self, metrics: Metrics) -> None:
        self._histogram = metrics.request_seconds
        self._children: dict[tuple[str, str, int], Any] = {}
        # Bound once, as structlog's performance guide advises: no lazy proxy per line.
        self._log = request_logger("bridge.http").bind()
        self._shed = _ShedSummary(self._log)

    def answered(self, request: web.BaseRequest, status: int, started: float, fields: dict[str, Any]) -> None:
        """Observe the request's duration and write its line (shed ones summarised)."""
        elapsed = time.perf_counter() - started
        resource = request.match_info.route.resource  # type: ignore[attr-defined]
        route = resource.canonical if resource is not None else "unmatched"
        if route == _FALLBACK_ROUTE:
            route = "unmatched"
        method = method_label(request.method)
        key = (route, method, status)
        child = self._children.get(key)
        if child is None:  # route, method and status are bounded, so is this cache
            child = self._children[key] = self._histogram.labels(route, method, str(status))
        child.observe(elapsed)
        if fields.get("outcome") == "overloaded":
            self._shed.shed(time.monotonic())
            return
        if route in QUIET_ROUTES and status < 500:  # noqa: PLR2004 - server errors are always logged
            return
        for name in _SENT_FIELDS:
            value = fields.get(name)
            if type(value) is str:
                fields[name] = mask_national_ids(value)
        self._log.info(
            "request",
            method=request.method if method != "other" else mask_national_ids(request.method),
            route=route,
            status=status,
            duration_ms=round(elapsed * 1000, 3),
            **fields,
        )
