"""Errors → problem+json (RFC 9457), and the request line for the routes other than the event route.

No aiohttp middleware chain: the event route (:func:`bridge.views.receive_event`)
does its own logging and error mapping in one pass; the other routes are wrapped
by :func:`logged`, and :func:`fallback` answers paths and methods nothing serves.
Handlers raise; they never build error bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from aiohttp import web

from bridge.errors import BridgeError
from bridge.http_contract import EVENTS_PATH, PROBLEM_BASE, PROBLEM_MEDIA_TYPE
from bridge.logs import get_logger
from bridge.state import BRIDGE

_log = get_logger("bridge.http")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


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


def problem_for(exc: BridgeError, fields: dict[str, Any]) -> web.Response:
    """The answer to a :class:`BridgeError`; its outcome and detail go into the log ``fields``."""
    fields.update(
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


def http_problem(exc: web.HTTPException) -> web.Response:
    """Aiohttp's own HTTP errors (404, 405, 413 …) as problem+json, ``Allow`` kept."""
    response = problem_response(exc.status, exc.reason, exc.text or exc.reason, _slug(exc.reason))
    if "Allow" in exc.headers:
        response.headers["Allow"] = exc.headers["Allow"]
    return response


def internal_error(request: web.BaseRequest) -> web.Response:
    """The answer to a bug: logged with its traceback (call from an ``except`` block)."""
    _log.exception("unhandled error", method=request.method)
    return problem_response(
        500, "Internal error", "unexpected error in the bridge; it has been logged", "internal-error"
    )


def answer_for(exc: Exception, request: web.BaseRequest, fields: dict[str, Any]) -> web.StreamResponse:
    """Whatever a handler raised, as the answer the client gets (call from an ``except`` block)."""
    if isinstance(exc, BridgeError):
        return problem_for(exc, fields)
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:  # noqa: PLR2004 - redirects and successes pass through
            return exc
        return http_problem(exc)
    return internal_error(request)


def _slug(reason: str) -> str:
    return reason.lower().replace(" ", "-")


def logged(handler: Handler) -> Handler:
    """A route other than the event route, with its log line, metric and problem answers."""

    async def answer(request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        fields: dict[str, Any] = {}
        http_log = request.app[BRIDGE].http_log
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            http_log.answered(request, 499, started, fields)
            raise
        except Exception as exc:  # noqa: BLE001 - every failure gets an answer
            response = answer_for(exc, request, fields)
        http_log.answered(request, response.status, started, fields)
        return response

    return answer


#: Paths served, with their methods, for telling 405 from 404 in :func:`fallback`.
_TOKEN_PREFIX = EVENTS_PATH + "/"


def fallback(allowed: dict[str, tuple[str, ...]]) -> Handler:
    """The catch-all route: 405 with ``Allow`` for a known path, else 404, as problem+json."""

    async def not_served(request: web.Request) -> web.StreamResponse:
        path = request.path
        methods = allowed.get(path)
        if methods is None and path.startswith(_TOKEN_PREFIX) and "/" not in path[len(_TOKEN_PREFIX) :]:
            methods = allowed.get(_TOKEN_PREFIX)
        if methods is not None:
            raise web.HTTPMethodNotAllowed(request.method, methods)
        raise web.HTTPNotFound

    return logged(not_served)
