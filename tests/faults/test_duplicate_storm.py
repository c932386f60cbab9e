"""Duplicate storm: one event posted 100 times at once.

Expected: every answer 2xx, exactly one ``published`` and 99 ``duplicate`` (all
pointing at the same record), and exactly one record in Kafka.
"""

from __future__ import annotations

from collections import Counter

import pytest

from tests.faults.accounting import event_load, report
from tests.support.waiting import wait_for_status

pytestmark = pytest.mark.faults

COPIES = 100


async def test_one_event_posted_100_times_concurrently(kafka_bootstrap, start_bridge, http):
    bridge = start_bridge(kafka_bootstrap)
    await wait_for_status(http, bridge.url + "/readyz", 200)
    load = event_load(bridge.url, connections=COPIES)
    event_id, body = load.new_event()
    await load.post_all([(event_id, body)] * COPIES)
    outcomes = Counter(r.answer for r in load.results)
    summary = report(
        load,
        kafka_bootstrap,
        answers=COPIES,
        published=outcomes["published"],
        duplicate=outcomes["duplicate"],
        scenario="duplicate-storm",
    )

    assert load.statuses == {200: COPIES}, load.statuses
    assert outcomes == {"published": 1, "duplicate": COPIES - 1}, outcomes
    assert len({r.location for r in load.results}) == 1, "answers name different records"
    assert summary.counts[event_id] == 1
    assert summary.lost == 0
    assert bridge.terminate() == 0
