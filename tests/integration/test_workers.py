"""Several worker processes on one port: metrics add up, SIGTERM drains all, a dead worker stops all."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import uuid

import orjson
import pytest

from devtools.show_topic import read_topics
from tests.support.events import ALTINN_CONTENT_TYPE, VALID
from tests.support.kafka import record_event_id
from tests.support.waiting import polled, wait_for_status

pytestmark = pytest.mark.integration

TEMPLATE = orjson.loads(VALID[5].read_bytes())  # correspondencepublished


def _started_pids(log: str) -> list[int]:
    return [orjson.loads(line)["pid"] for line in log.splitlines() if '"event":"started"' in line]


async def _wait_for_workers(bridge, count: int) -> list[int]:
    async def started() -> list[int]:
        return _started_pids(bridge.log())

    return await polled(
        started, lambda pids: len(pids) == count, what=f"{count} workers starting", timeout_s=10, every_s=0.1
    )


async def test_two_workers_share_the_port_and_their_metrics(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_WORKERS="2")
    pids = await _wait_for_workers(bridge, 2)
    assert len(set(pids)) == 2
    assert bridge.process is not None
    assert bridge.process.pid not in pids  # a supervisor above two workers
    await wait_for_status(http, bridge.url + "/readyz", 200)

    ids = [str(uuid.uuid4()) for _ in range(60)]
    for event_id in ids:
        # A new connection each time, so the kernel can pick either worker.
        async with http.post(
            bridge.url + "/api/v1/events",
            data=orjson.dumps({**TEMPLATE, "id": event_id}),
            headers={"Content-Type": ALTINN_CONTENT_TYPE, "Connection": "close"},
        ) as response:
            assert response.status == 200

    await asyncio.sleep(2.5)  # every worker refreshes its ready gauge within a second or two
    async with http.get(bridge.url + "/metrics") as response:
        exposition = await response.text()
    published = re.search(
        r'^altinn_bridge_events_total\{outcome="published",type="correspondencepublished"\} (\S+)$',
        exposition,
        re.MULTILINE,
    )
    assert published is not None
    assert float(published.group(1)) == 60, "metrics from both workers add up"
    assert re.search(r"^altinn_bridge_ready 1\.0$", exposition, re.MULTILINE)

    landed = {
        record_event_id(r)
        for r in read_topics(kafka_bootstrap, ["altinn.correspondence.correspondencepublished"])
    }
    assert set(ids) <= landed
    assert bridge.terminate() == 0
    log = bridge.log()
    assert log.count('"event":"stopped"') == 2
    assert '"event":"workers stopped"' in log


async def test_a_worker_that_dies_stops_the_whole_bridge(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_WORKERS="2")
    first, _ = await _wait_for_workers(bridge, 2)
    await wait_for_status(http, bridge.url + "/readyz", 200)

    os.kill(first, signal.SIGKILL)

    assert bridge.process is not None
    code = await asyncio.to_thread(bridge.process.wait, 40)
    assert code == 1
    assert '"event":"worker exited; stopping the others"' in bridge.log()
