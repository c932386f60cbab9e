"""Broker SIGKILL mid-load, started again a few seconds later; the bridge keeps running.

A durable broker (Tansu on local S3: what it acknowledged survives SIGKILL) and a
bridge with a 2 s publish timeout. Distinct events arrive at 75/s for 15 s; 4 s in
the broker is SIGKILLed, 4 s later it is started again on the same port and storage.

Expected: while the broker is down every request is answered 503 within the publish
timeout (plus a margin), none hangs; after the restart the same bridge process answers
2xx again (the last seconds of the load are all 2xx); every event answered 2xx is in
Kafka.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from bench.load import ERROR
from tests.faults.accounting import event_load, report, resend_all, with_status
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

PUBLISH_TIMEOUT_S = 2.0
#: Scheduling slack on top of the publish timeout for a 503 to come back.
MARGIN_S = 1.5
RATE = 75
DURATION_S = 15.0
KILL_AT_S = 4.0
DOWN_FOR_S = 4.0
#: The last seconds of the load, which must all be 2xx.
RECOVERED_FOR_S = 3.0


async def test_broker_sigkill_mid_load_then_restart(durable_broker, start_bridge, http):
    bridge = start_bridge(
        durable_broker.bootstrap,
        BRIDGE_PUBLISH_TIMEOUT_S=str(PUBLISH_TIMEOUT_S),
        BRIDGE_READY_CHECK_INTERVAL_S="0.5",
    )
    await wait_for_status(http, bridge.url + "/readyz", 200)
    load = event_load(bridge.url, timeout_s=10.0)

    async def outage() -> tuple[float, float, float]:
        await asyncio.sleep(KILL_AT_S)
        await asyncio.to_thread(durable_broker.kill)
        killed = load.now()
        await asyncio.sleep(DOWN_FOR_S)
        restarting = load.now()
        await asyncio.to_thread(durable_broker.start)  # same port, same S3 storage
        return killed, restarting, load.now()

    (killed, restarting, up), _ = await asyncio.gather(outage(), load.open_loop(RATE, DURATION_S))
    assert up < DURATION_S - RECOVERED_FOR_S, f"harness: the broker took until {up:.1f} s to come back"

    refused = with_status(load, 503)
    # Started after the kill, and timed out before the restart began: nothing could ack them.
    in_outage = [r for r in load.results if killed <= r.started_s <= restarting - PUBLISH_TIMEOUT_S - 0.5]
    recovered = [r for r in load.results if r.started_s >= DURATION_S - RECOVERED_FOR_S]
    first_ok = min((r.started_s + r.latency_s for r in load.results if r.ok and r.started_s > up), default=-1)
    summary = report(
        load,
        durable_broker.bootstrap,
        max_503_latency_s=round(max((r.latency_s for r in refused), default=0), 3),
        first_2xx_after_restart_s=round(first_ok - up, 3),
        scenario="broker-sigkill",
    )

    assert set(load.statuses) <= {200, 503}, f"hangs or other answers: {load.statuses}"
    assert with_status(load, ERROR) == []
    assert in_outage, "harness: no request started while the broker was down"
    assert {r.status for r in in_outage} == {503}, [(r.started_s, r.status) for r in in_outage]
    assert {r.answer for r in refused} <= {"urn:altinn-kafka-bridge:problem:kafka-unavailable"}
    slow = [(round(r.started_s, 2), round(r.latency_s, 2)) for r in refused]
    assert all(r.latency_s <= PUBLISH_TIMEOUT_S + MARGIN_S for r in refused), slow
    assert recovered, "harness: no request in the last seconds"
    assert all(r.ok for r in recovered), [(round(r.started_s, 2), r.status) for r in recovered if not r.ok]
    assert bridge.process is not None
    assert bridge.process.poll() is None, "the bridge exited or restarted"
    assert summary.lost == 0, summary.lost_ids[:20]

    # Then Altinn retries every event it got 503 for (here: everything, to be thorough). Records
    # that timed out but landed anyway were committed when Kafka acknowledged them late, so
    # their retries are duplicates, not second copies.
    await asyncio.sleep(PUBLISH_TIMEOUT_S * 2)  # the producer settles what it still held
    resent = await resend_all(load, bridge.url)
    load.results.extend(resent)
    async with http.get(bridge.url + "/metrics") as response:
        exposition = await response.text()
    late = next(
        float(line.split()[-1])
        for line in exposition.splitlines()
        if line.startswith("altinn_bridge_late_acknowledgements_total ")
    )
    outcomes = Counter(r.answer for r in resent)
    after = report(
        load,
        durable_broker.bootstrap,
        resent=len(resent),
        resent_published=outcomes["published"],
        resent_duplicate=outcomes["duplicate"],
        late_acknowledgements=int(late),
        scenario="broker-sigkill-then-resend",
    )
    assert {r.status for r in resent} == {200}, Counter(r.status for r in resent)
    assert after.lost == 0
    assert bridge.terminate() == 0
