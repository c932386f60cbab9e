"""Slow clients cannot hold connections for ever: unfinished headers and idle keep-alives are closed."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.integration


async def _closed_after(port: int, first_bytes: bytes, limit_s: float) -> float:
    """Send ``first_bytes`` and nothing more; seconds until the server closes the connection."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.monotonic()
    writer.write(first_bytes)
    await writer.drain()
    try:
        async with asyncio.timeout(limit_s):
            while await reader.read(1024):
                pass
    finally:
        writer.close()
    return time.monotonic() - started


async def test_unfinished_headers_and_idle_connections_are_closed(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_KEEPALIVE_TIMEOUT_S="2")
    await wait_for_status(http, bridge.url + "/healthz", 200)

    # Slowloris: a request line and half a header, then silence.
    slow = await _closed_after(bridge.port, b"POST /api/v1/events HTTP/1.1\r\nHost: x\r\nContent-Ty", 15)
    # A connection that never sends anything.
    idle = await _closed_after(bridge.port, b"", 15)

    assert slow >= 1.5
    assert idle >= 1.5
    assert bridge.terminate() == 0
