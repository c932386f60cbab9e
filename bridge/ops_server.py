"""The probes-and-metrics listener (``BRIDGE_OPS_PORT``), on a thread and event loop of its own.

On the event port, ``/healthz`` shares one event loop with every event
connection: at 3x overload the bench measured its p99 at 310 ms, waiting its
turn behind 1,536 busy connections. Here ``/healthz``, ``/readyz`` and
``/metrics`` get their own loop in their own thread, which Python's GIL hands
the CPU every few milliseconds however busy the main loop is.

Answering from another thread must not hide a main loop that is stuck, so
liveness here is a heartbeat: the main loop notes the time every
:data:`HEARTBEAT_S`, and ``/healthz`` fails once it has been silent for
``stall_s``. Readiness is evaluated on the main loop (its checks live there),
bounded by a timeout; metrics are read directly (prometheus-client is
thread-safe).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable

from aiohttp import web

from bridge.logs import get_logger
from bridge.state import Bridge
from bridge.views import json_response, metrics_response, readiness_response, ready_problems

#: How often the main loop notes that it is alive, in seconds.
HEARTBEAT_S = 1.0
#: ``/healthz`` fails when the main loop has been silent this long (seconds). Far above any
#: loop iteration seen under overload (~0.3 s), far below Kubernetes' default 30 s to restart.
STALL_S = 10.0
#: Bound on starting and stopping the listener's thread, in seconds.
THREAD_TIMEOUT_S = 10.0
#: How long a thread waiting for the GIL lets the running one go on (Python's default: 5 ms).
#: A probe needs the GIL a few times (accept, read, answer), each a wait of up to this under
#: load. Only a thread that asks for the GIL shortens the main loop's turn, and the ops thread
#: asks only when a request comes in, so the main loop loses next to nothing.
GIL_SWITCH_INTERVAL_S = 0.001

_log = get_logger("bridge.ops")


class OpsServer:
    """Serves ``/healthz``, ``/readyz`` and ``/metrics`` of ``bridge`` on ``host:port``."""

    def __init__(
        self,
        bridge: Bridge,
        host: str,
        port: int,
        *,
        reuse_port: bool = False,
        stall_s: float = STALL_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._bridge = bridge
        self._host = host
        self._port = port
        self._reuse_port = reuse_port
        self._stall_s = stall_s
        self._clock = clock
        self._beat_at = clock()
        self._main: asyncio.AbstractEventLoop | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    async def start(self) -> None:
        """Listen; raises ``OSError`` (as the event port does) when the port cannot be bound."""
        self._main = asyncio.get_running_loop()
        sys.setswitchinterval(min(sys.getswitchinterval(), GIL_SWITCH_INTERVAL_S))
        self._heartbeat = asyncio.create_task(self._beat(), name="ops-heartbeat")
        self._thread = threading.Thread(target=self._run, name="ops-http", daemon=True)
        self._thread.start()
        started = await asyncio.to_thread(self._started.wait, THREAD_TIMEOUT_S)
        if self._error is not None or not started:
            await self.stop()
            if self._error is not None:
                raise self._error
            raise OSError(f"ops listener on {self._host}:{self._port} did not start")

    async def stop(self) -> None:
        """Stop listening and end the thread (bounded)."""
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        loop, stopping = self._loop, self._stopping
        if loop is not None and stopping is not None and not loop.is_closed():
            loop.call_soon_threadsafe(stopping.set)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, THREAD_TIMEOUT_S)
            if self._thread.is_alive():
                _log.warning("ops listener thread did not stop", timeout_s=THREAD_TIMEOUT_S)

    async def _beat(self) -> None:
        while True:
            self._beat_at = self._clock()
            await asyncio.sleep(HEARTBEAT_S)

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start(), which raises it
            self._error = exc
        finally:
            self._started.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self._host, self._port, reuse_port=self._reuse_port)
            await site.start()
            self._started.set()
            await self._stopping.wait()
        finally:
            await runner.cleanup()

    async def _healthz(self, _: web.Request) -> web.Response:
        silent_s = self._clock() - self._beat_at
        if silent_s > self._stall_s:
            return json_response(
                {"status": "stalled", "detail": f"the event loop has not run for {silent_s:.1f} s"},
                status=503,
            )
        return json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        if self._main is None:
            return readiness_response({"starting": "not started"})
        evaluation = asyncio.run_coroutine_threadsafe(ready_problems(self._bridge), self._main)
        try:
            async with asyncio.timeout(self._stall_s):
                problems = await asyncio.wrap_future(evaluation)
        except TimeoutError:
            evaluation.cancel()
            problems = {"event_loop": f"readiness not evaluated within {self._stall_s:g} s"}
        return readiness_response(problems)

    async def _metrics(self, _: web.Request) -> web.Response:
        return metrics_response(self._bridge)
