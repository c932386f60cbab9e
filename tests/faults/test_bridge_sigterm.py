"""Bridge SIGTERM mid-load: drain, finish what is in flight, exit 0 within the grace period.

Distinct events arrive at 75/s; 3 s in the bridge gets SIGTERM (drain 1 s, grace
10 s). The load keeps going until half a second after the process exited.

Expected: exit code 0 within the grace period; every answer is 2xx or 503
``shutting-down`` (refused connections once the listener has closed are expected,
and never count as 2xx); requests already in flight at the signal are answered;
every event answered 2xx is in Kafka.
"""

from __future__ import annotations

import asyncio
import signal

import pytest

from bench.load import ERROR
from tests.faults.accounting import event_load, report, with_status
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

GRACE_S = 10.0
DRAIN_S = 1.0
RATE = 75
SIGTERM_AT_S = 3.0
#: Posting goes on this long after the process exited.
AFTER_EXIT_S = 0.5
SHUTTING_DOWN = "urn:altinn-kafka-bridge:problem:shutting-down"


async def test_bridge_sigterm_mid_load(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(
        kafka_bootstrap, BRIDGE_SHUTDOWN_GRACE_S=str(GRACE_S), BRIDGE_SHUTDOWN_DRAIN_S=str(DRAIN_S)
    )
    await wait_for_status(http, bridge.url + "/readyz", 200)
    process = bridge.process
    assert process is not None
    load = event_load(bridge.url, timeout_s=GRACE_S + 5)
    stop = asyncio.Event()

    async def terminate() -> tuple[float, float, int]:
        try:
            await asyncio.sleep(SIGTERM_AT_S)
            signalled = load.now()
            process.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(process.wait, GRACE_S + 1)  # 1 s of scheduling slack
            exited = load.now()
            await asyncio.sleep(AFTER_EXIT_S)
        finally:
            stop.set()
        return signalled, exited, code

    (signalled, exited, code), _ = await asyncio.gather(
        terminate(), load.open_loop(RATE, SIGTERM_AT_S + GRACE_S + 5, stop=stop)
    )

    before = [r for r in load.results if r.started_s < signalled]
    refused = with_status(load, 503)
    errors = with_status(load, ERROR)
    first_error = min((r.started_s for r in errors), default=signalled)
    summary = report(
        load,
        kafka_bootstrap,
        exit_code=code,
        exit_after_s=round(exited - signalled, 3),
        first_error_after_sigterm_s=round(first_error - signalled, 3),
        scenario="bridge-sigterm",
    )

    assert code == 0
    assert exited - signalled <= GRACE_S + 1
    assert set(load.statuses) <= {200, 503, ERROR}, load.statuses
    assert [r for r in before if r.status == ERROR] == [], "a request in flight at SIGTERM was not answered"
    assert refused, "nothing was answered 503 during the drain"
    assert {r.answer for r in refused} == {SHUTTING_DOWN}
    assert all(r.retry_after for r in refused)
    # (50 ms: a request started just before the signal may reach the bridge after it.)
    assert all(r.started_s >= signalled - 0.05 for r in refused + errors)
    assert summary.lost == 0, summary.lost_ids[:20]
    assert '"event":"stopped"' in bridge.log()
