"""Overload: far more concurrent requests than ``BRIDGE_MAX_IN_FLIGHT`` allows.

A bridge with ``BRIDGE_MAX_IN_FLIGHT=16`` first gets 8 clients for 2 s (what it
sustains without shedding, reported), then 300 clients posting distinct events
back to back for 8 s (closed loop: always ~300 requests at the bridge). Meanwhile
``/healthz`` is polled 10 times a second (fixed rate) on its own connection, and the bridge's resident
memory is sampled from ``/proc``.

Expected: the excess is shed at once with 503 ``overloaded`` and a ``Retry-After``
header; ``/healthz`` answers 200 every time; memory stays bounded; every event answered
2xx is in Kafka. Timings are reported (achieved rate, /healthz p99), not asserted.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from bench.load import ERROR, percentile
from tests.faults.accounting import RecordingLoad, event_load, report, with_status
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

MAX_IN_FLIGHT = 16
WORKERS = 300
DURATION_S = 8.0
BASELINE_WORKERS = 8
BASELINE_S = 2.0
HEALTH_PER_S = 10.0
RSS_EVERY_S = 0.2
#: A loose sanity bound, not a benchmark.
RSS_LIMIT_MB = 400
OVERLOADED = "urn:altinn-kafka-bridge:problem:overloaded"


def memory_mb(pid: int, field: str) -> float:
    """``VmRSS``/``VmHWM`` of a process from ``/proc/<pid>/status``, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024  # kB
    raise AssertionError(f"{field} not in /proc/{pid}/status")


async def sample_rss(pid: int, done: asyncio.Event, out: list[float]) -> None:
    """VmRSS of ``pid`` every ``RSS_EVERY_S`` until ``done``."""
    while not done.is_set():
        out.append(memory_mb(pid, "VmRSS"))
        await asyncio.sleep(RSS_EVERY_S)


async def test_overload_sheds_with_503_and_stays_healthy(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap, BRIDGE_MAX_IN_FLIGHT=str(MAX_IN_FLIGHT))
    await wait_for_status(http, bridge.url + "/readyz", 200)
    assert bridge.process is not None
    pid = bridge.process.pid
    calm = event_load(bridge.url)
    await calm.closed_loop(BASELINE_WORKERS, BASELINE_S)
    baseline_ok_per_s = round(calm.statuses[200] / BASELINE_S)

    load = event_load(bridge.url, timeout_s=15.0)
    healthz = RecordingLoad(bridge.url + "/healthz", connections=1, timeout_s=5.0)
    rss: list[float] = []
    done = asyncio.Event()
    watchers = [
        asyncio.create_task(healthz.open_loop(HEALTH_PER_S, 10 * DURATION_S, stop=done)),
        asyncio.create_task(sample_rss(pid, done, rss)),
    ]
    began = time.monotonic()
    try:
        await load.closed_loop(WORKERS, DURATION_S)
    finally:
        took = time.monotonic() - began
        done.set()
        await asyncio.gather(*watchers)
    peak_rss_mb = max([memory_mb(pid, "VmHWM"), *rss])

    ok_per_s = round(load.statuses[200] / took)
    answered_per_s = round(sum(1 for r in load.results if r.status != ERROR) / took)
    load.bodies.update(calm.bodies)  # checked in Kafka too
    load.results.extend(calm.results)
    refused = with_status(load, 503)
    health = [(r.status, r.latency_s) for r in healthz.results]
    health_ms = [latency * 1000 for _, latency in health]
    summary = report(
        load,
        kafka_bootstrap,
        overloaded=sum(1 for r in refused if r.answer == OVERLOADED),
        baseline_ok_per_s=baseline_ok_per_s,
        ok_per_s=ok_per_s,
        answered_per_s=answered_per_s,
        p99_503_ms=round(percentile([r.latency_s * 1000 for r in refused], 99), 1),
        max_latency_s=round(max(r.latency_s for r in load.results), 3),
        workers=WORKERS,
        peak_rss_mb=round(peak_rss_mb, 1),
        healthz_polls=len(health),
        healthz_p50_ms=round(percentile(health_ms, 50), 1),
        healthz_p99_ms=round(percentile(health_ms, 99), 1),
        healthz_max_ms=round(max(health_ms, default=0), 1),
        scenario="overload",
    )

    assert refused, f"nothing was shed with {WORKERS} clients and BRIDGE_MAX_IN_FLIGHT={MAX_IN_FLIGHT}"
    assert all(r.retry_after for r in refused), "a 503 without Retry-After"
    assert {(r.content_type, r.answer) for r in refused} == {("application/problem+json", OVERLOADED)}
    assert set(load.statuses) <= {200, 503}, load.statuses
    assert health, "harness: /healthz was never polled"
    assert {status for status, _ in health} == {200}, [h for h in health if h[0] != 200][:10]
    assert peak_rss_mb < RSS_LIMIT_MB
    assert summary.lost == 0, summary.lost_ids[:20]
    assert bridge.terminate() == 0
