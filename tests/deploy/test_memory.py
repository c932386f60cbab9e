"""The memory figures AltinnBridgeMemoryNearLimit holds against the limit, from a bridge with workers.

prometheus-client's own process metrics are not exported in multiprocess mode; the bridge's are:
each worker samples its RSS (plus its share of the supervisor's) into a ``livesum`` gauge, so
/metrics (answered by any one worker) shows the sum over every bridge process. Checked against
what the kernel says about each of them.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import orjson
import pytest

from bridge.process_memory import LIMIT_METRIC, RESIDENT_METRIC, SAMPLE_INTERVAL_S
from tests.deploy.conftest import run, tool
from tests.support.waiting import polled, wait_for_status

pytestmark = pytest.mark.deploy


def _rss(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _value(exposition: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", exposition, re.MULTILINE)
    assert match is not None, f"{name} not in /metrics"
    return float(match.group(1))


async def test_resident_memory_is_the_sum_over_the_workers(kafka_bootstrap, start_bridge, http) -> None:
    bridge = start_bridge(kafka_bootstrap, BRIDGE_WORKERS="2")

    async def started() -> list[int]:
        log = bridge.log()
        return [orjson.loads(line)["pid"] for line in log.splitlines() if '"event":"started"' in line]

    workers = await polled(started, lambda pids: len(pids) == 2, what="2 workers", timeout_s=20, every_s=0.1)
    await wait_for_status(http, bridge.url + "/readyz", 200)

    async def exposition() -> str:
        async with http.get(bridge.url + "/metrics") as response:
            return await response.text()

    assert bridge.process is not None
    processes = [bridge.process.pid, *workers]  # the supervisor and its two workers

    # Every worker has sampled at least once, and the sum has settled near what the kernel says.
    def near_the_kernels_sum(text: str) -> bool:
        kernel = sum(_rss(pid) for pid in processes)
        return abs(_value(text, RESIDENT_METRIC) - kernel) < 0.1 * kernel

    text = await polled(
        exposition,
        near_the_kernels_sum,
        what="RSS sum of the bridge's processes",
        timeout_s=4 * SAMPLE_INTERVAL_S,
        every_s=0.5,
    )
    # A sum, not one process's figure (two workers of about the same size, and the supervisor).
    assert _value(text, RESIDENT_METRIC) > sum(_rss(pid) for pid in workers)
    # The limit is there for the alert (0 where the test runs without one), once, not per worker.
    assert _value(text, LIMIT_METRIC) >= 0
    assert len(re.findall(rf"^{LIMIT_METRIC} ", text, re.MULTILINE)) == 1
    # The multiprocess exposition is valid.
    assert run(tool("promtool"), "check", "metrics", stdin=text.encode()) == ""
    assert bridge.terminate() == 0
