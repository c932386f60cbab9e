"""Bridge SIGKILL mid-load, a new bridge on the same broker, then every body sent again.

Distinct events at 75/s for 5 s to a bridge on a broker of this test's own. 2.5 s in,
the broker is paused (SIGSTOP) for a moment so that publishes are surely in flight
when, 0.5 s later, the bridge is SIGKILLed: what it had already written reaches the
broker when it resumes, unanswered and without a dedupe state record (the crash gap).
The load goes on against the dead port. A new bridge process starts on the same broker
with the same settings (dedupe kept in Kafka, the default); once ``/readyz`` is 200
every body ever sent is re-sent to it, as Altinn's retries would.

Expected: every re-send is answered 2xx; afterwards every event is in Kafka exactly
once — including those the killed bridge published without answering.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from bench.load import ERROR
from tests.faults.accounting import event_load, report, resend_all
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

RATE = 75
DURATION_S = 5.0
PAUSE_AT_S = 2.5
KILL_AT_S = 3.0
RESUME_AT_S = 3.2


async def test_bridge_sigkill_restart_and_resend_everything(own_broker, start_bridge, http):
    first = start_bridge(own_broker.bootstrap)
    await wait_for_status(http, first.url + "/readyz", 200)
    process = first.process
    assert process is not None
    load = event_load(first.url, timeout_s=5.0)

    async def kill() -> float:
        await asyncio.sleep(PAUSE_AT_S)
        own_broker.pause()
        try:
            await asyncio.sleep(KILL_AT_S - PAUSE_AT_S)
            killed = load.now()
            process.kill()
            await asyncio.to_thread(process.wait)
            await asyncio.sleep(RESUME_AT_S - KILL_AT_S)
        finally:
            own_broker.resume()
        return killed

    killed, _ = await asyncio.gather(kill(), load.open_loop(RATE, DURATION_S))
    first_pass = Counter(r.status for r in load.results)
    cut_off = sum(1 for r in load.results if r.status == ERROR and r.started_s < killed)

    second = start_bridge(own_broker.bootstrap)
    await wait_for_status(http, second.url + "/readyz", 200, timeout_s=30)
    resent = await resend_all(load, second.url)
    load.results.extend(resent)
    outcomes = Counter(r.answer for r in resent)
    assert second.terminate() == 0
    loaded = next(
        orjson.loads(line) for line in second.log().splitlines() if '"event":"dedupe window loaded"' in line
    )
    summary = report(
        load,
        own_broker.bootstrap,
        first_pass_2xx=first_pass[200],
        cut_off_in_flight=cut_off,
        resent=len(resent),
        resent_published=outcomes["published"],
        resent_duplicate=outcomes["duplicate"],
        recovered_at_start=loaded["recovered"],
        scenario="bridge-sigkill-resend",
    )

    assert first_pass[200] > 0
    assert cut_off > 0, "harness: no request was in flight at the kill"
    not_ok = [(r.event_id, r.status, r.answer) for r in resent if not r.ok]
    assert not_ok == [], not_ok[:10]
    assert summary.lost == 0, summary.lost_ids[:20]
    assert summary.found_in_kafka == summary.sent, "some event is not in Kafka after the re-sends"
    dupes = sorted(i for i, n in summary.counts.items() if n > 1)
    assert summary.duplicates_in_kafka == 0, dupes[:20]
