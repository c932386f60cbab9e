"""The ops listener answers from its own thread, so a busy (here: blocked) event loop cannot delay it.

Liveness there is the main loop's heartbeat: a loop that stops running fails
``/healthz`` even though the ops thread itself still answers.
"""

from __future__ import annotations

import asyncio
import threading
import time
import urllib.error
import urllib.request

import orjson
import pytest

from bridge.app import create_app
from bridge.ops_server import OpsServer
from bridge.state import BRIDGE
from devtools.broker import free_port
from tests.support.settings import make_settings


def _get(url: str) -> tuple[int, dict[str, object], float]:
    """Status, JSON body and seconds taken, from a plain blocking client."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - a loopback test URL
            return response.status, orjson.loads(response.read()), time.monotonic() - started
    except urllib.error.HTTPError as error:
        return error.code, orjson.loads(error.read()), time.monotonic() - started


def _get_in_thread(
    url: str, after_s: float
) -> tuple[threading.Thread, list[tuple[int, dict[str, object], float]]]:
    answers: list[tuple[int, dict[str, object], float]] = []

    def get() -> None:
        time.sleep(after_s)
        answers.append(_get(url))

    thread = threading.Thread(target=get)
    thread.start()
    return thread, answers


async def test_answers_while_the_event_loop_is_blocked_and_reports_the_stall(fake_publisher):
    app = create_app(make_settings(), publisher=fake_publisher)
    port = free_port()
    ops = OpsServer(app[BRIDGE], "127.0.0.1", port, stall_s=0.5)
    await ops.start()
    base = f"http://127.0.0.1:{port}"
    try:
        status, body, _ = await asyncio.to_thread(_get, base + "/healthz")
        assert (status, body) == (200, {"status": "ok"})

        # Block the event loop (as a long synchronous step would): the ops thread still answers,
        # and says the loop has stopped running.
        thread, answers = _get_in_thread(base + "/healthz", after_s=0.8)
        time.sleep(2.0)  # noqa: ASYNC251 - blocking the loop is the point
        thread.join(10)
        [(status, body, took_s)] = answers
        assert status == 503
        assert body["status"] == "stalled"
        assert took_s < 1.0  # answered during the block, not after it

        await asyncio.sleep(1.2)  # the heartbeat runs again
        status, body, _ = await asyncio.to_thread(_get, base + "/healthz")
        assert (status, body) == (200, {"status": "ok"})
    finally:
        await ops.stop()


async def test_readiness_and_metrics_come_from_the_bridge(fake_publisher):
    app = create_app(make_settings(), publisher=fake_publisher)
    bridge = app[BRIDGE]
    port = free_port()
    ops = OpsServer(bridge, "127.0.0.1", port)
    await ops.start()
    base = f"http://127.0.0.1:{port}"
    try:
        # The app has not started: no producer yet, evaluated by the main loop's own checks.
        status, body, _ = await asyncio.to_thread(_get, base + "/readyz")
        assert status == 503
        assert "producer" in body["failing"]

        bridge.metrics.events.labels("published", "correspondencepublished").inc()
        metrics = await asyncio.to_thread(lambda: urllib.request.urlopen(base + "/metrics").read())  # noqa: S310
        assert (
            b'altinn_bridge_events_total{outcome="published",type="correspondencepublished"} 1.0' in metrics
        )
    finally:
        await ops.stop()
    # Stopped: the port is free again.
    ops = OpsServer(bridge, "127.0.0.1", port)
    await ops.start()
    await ops.stop()


async def test_a_taken_port_fails_start_with_oserror(fake_publisher):
    app = create_app(make_settings(), publisher=fake_publisher)
    port = free_port()
    first = OpsServer(app[BRIDGE], "127.0.0.1", port)
    await first.start()
    try:
        second = OpsServer(app[BRIDGE], "127.0.0.1", port)
        with pytest.raises(OSError, match=str(port)):
            await second.start()
    finally:
        await first.stop()
